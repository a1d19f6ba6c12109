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

    /// Tells the kernel this process no longer needs the whole pages inside
    /// `[start, start + byteCount)` (a tensor copied elsewhere): they leave its resident set,
    /// and a later read maps them again from the page cache.
    func release(_ start: UnsafeRawPointer, byteCount: Int) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let first = (Int(bitPattern: start) + page - 1) / page * page
        let end = (Int(bitPattern: start) + byteCount) / page * page
        guard end > first else { return }
        madvise(UnsafeMutableRawPointer(bitPattern: first), end - first, MADV_DONTNEED)
    }

    deinit {
        munmap(UnsafeMutableRawPointer(mutating: base), size)
    }
}
