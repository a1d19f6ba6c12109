import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A read-only memory map of a whole file, unmapped in `deinit`. Weights are used in place:
/// the kernel pages them in on demand and may share them between worker processes.
final class MappedFile: @unchecked Sendable {
    let base: UnsafeRawPointer
    let size: Int
    let path: String

    init(path: String) throws(InferenceError) {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw InferenceError(.cannotOpen, "cannot open \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw InferenceError(.cannotOpen, "cannot stat \(path): \(String(cString: strerror(errno)))")
        }
        let size = Int(info.st_size)
        guard size > 0 else { throw InferenceError(.truncated, "\(path) is empty") }
        guard let pointer = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), pointer != MAP_FAILED else {
            throw InferenceError(.cannotOpen, "cannot map \(path): \(String(cString: strerror(errno)))")
        }
        self.base = UnsafeRawPointer(pointer)
        self.size = size
        self.path = path
    }

    deinit {
        munmap(UnsafeMutableRawPointer(mutating: base), size)
    }
}
