import Foundation
import Testing
import Worker
import Yams

/// The shipped operations files, checked with the real tools where this machine has them
/// (`promtool`, the `sluice` binary, `dpkg`) and statically where it has none (no Docker
/// engine, no Kubernetes cluster).
@Suite("Operations files")
struct OperationsFileTests {
    // MARK: Prometheus

    @Test("promtool accepts the scrape config and the rules, and the rules' unit tests pass")
    func promtool() throws {
        for arguments in [["check", "config", "ops/prometheus/prometheus.yml"],
                          ["check", "rules", "ops/prometheus/alerts.yml"],
                          ["test", "rules", "ops/prometheus/tests/alerts_test.yml"]] {
            let (status, output) = try Ops.run("/usr/bin/promtool", arguments)
            #expect(status == 0, "promtool \(arguments.joined(separator: " ")): \(output)")
        }
    }

    @Test("every alert has a runbook section in the README")
    func runbooks() throws {
        let readme = try Ops.text("README.md")
        var alerts: [String] = []
        for group in Ops.list(try Ops.yaml("ops/prometheus/alerts.yml"), "groups") {
            for rule in Ops.list(group, "rules") {
                guard let alert = Ops.string(rule, "alert") else { continue }
                alerts.append(alert)
                #expect(Ops.string(rule, "annotations.runbook") == alert)
                let documented = readme.contains("#### \(alert)")
                #expect(documented, "README has no runbook heading for \(alert)")
            }
        }
        #expect(alerts.count == 7)
    }

    // MARK: docker compose

    @Test("docker-compose.yml: images, health checks, volumes, ports and the worker's command and environment are real")
    func compose() throws {
        let compose = try Ops.yaml("docker-compose.yml")
        let services = Ops.mapping(compose, "services")
        #expect(Set(services.keys) == ["kafka", "topic-init", "worker", "prometheus", "grafana"])

        // Images: ours is built from the repository's Dockerfile; the others are pinned official images.
        for (name, service) in services {
            if let build = Ops.string(service, "build") {
                #expect(FileManager.default.fileExists(atPath: Ops.root.appendingPathComponent(build).appendingPathComponent("Dockerfile").path))
                #expect(Ops.string(service, "image") == "sluice:latest")
            } else {
                let image = try #require(Ops.string(service, "image"), "\(name) has neither build nor image")
                let repository = String(image.split(separator: ":").first ?? "")
                #expect(["apache/kafka", "prom/prometheus", "grafana/grafana"].contains(repository), "\(name): unexpected image \(image)")
                #expect(image.contains(":") && !image.hasSuffix(":latest"), "\(name): pin the image version")
            }
            if name == "topic-init" {
                #expect(Ops.value(service, "healthcheck.disable") as? Bool == true)  // a one-shot job
                #expect(Ops.string(service, "restart") == "no")
            } else {
                #expect(!Ops.list(service, "healthcheck.test").isEmpty, "\(name) has no health check")
            }
        }

        // Volumes: named ones are declared; bind-mounted files and folders exist in the repository.
        let declared = Set(Ops.mapping(compose, "volumes").keys)
        for (name, service) in services {
            for case let volume as String in Ops.list(service, "volumes") {
                let source = String(volume.split(separator: ":")[0])
                if source.hasPrefix(".") {
                    #expect(FileManager.default.fileExists(atPath: Ops.root.appendingPathComponent(source).path), "\(name): \(source) does not exist")
                } else {
                    #expect(declared.contains(source), "\(name): volume \(source) is not declared")
                }
            }
        }

        // The worker scales: no fixed name or host port.
        let worker = Ops.mapping(services, "worker")
        #expect(worker["container_name"] == nil && worker["ports"] == nil)

        // Its environment names real keys and loads; brokers, ports and paths match the other services.
        var environment: [String: String] = [:]
        for (key, value) in Ops.mapping(worker, "environment") { environment[key] = Ops.interpolateDefaults("\(value)") }
        let known = try Ops.configurationVariables()
        for key in environment.keys { #expect(known.contains(key), "\(key) is not a configuration key") }
        let configuration = try Ops.configuration(environment: environment)
        let advertised = Ops.string(services, "kafka.environment.KAFKA_ADVERTISED_LISTENERS") ?? ""
        for broker in configuration.kafka.brokers {
            #expect(advertised.contains("//\(broker)"), "\(broker) is not an advertised listener of the kafka service")
        }
        #expect(Ops.list(worker, "expose").map { "\($0)" } == [String(configuration.worker.metricsPort)])
        #expect(Ops.list(worker, "healthcheck.test").map { "\($0)" }.contains("http://127.0.0.1:\(configuration.worker.metricsPort)/healthz"))
        let mounts = Ops.list(worker, "volumes").compactMap { ($0 as? String)?.split(separator: ":").dropFirst().first.map(String.init) }
        #expect(mounts.contains { configuration.audit.db.hasPrefix($0 + "/") }, "the audit database is not on a volume")
        #expect(mounts.contains { configuration.worker.model.hasPrefix($0 + "/") }, "the model is not mounted")
        let grace = Duration.seconds(Int(Ops.string(worker, "stop_grace_period")?.dropLast() ?? "0") ?? 0)
        #expect(grace > .milliseconds(configuration.worker.gracePeriodMs))
        #expect(Ops.string(services, "topic-init.environment.SLUICE_KAFKA_BROKERS") == environment["SLUICE_KAFKA_BROKERS"])

        // The commands are real `sluice` commands whose options exist, and the configuration they
        // name (the image's copy of Config/sluice.yaml) loads with the service's environment.
        for (service, subcommand) in [("worker", ["run"]), ("topic-init", ["topics", "create"])] {
            let command = Ops.list(services, "\(service).command").map { "\($0)" }
            #expect(Array(command.prefix(subcommand.count)) == subcommand)
            let options = try Ops.options(of: subcommand)
            for option in command where option.hasPrefix("--") { #expect(options.contains(option), "sluice \(subcommand) has no \(option)") }
            #expect(command.contains("/etc/sluice/sluice.yaml"))
        }
        var processEnvironment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("SLUICE_") }
        processEnvironment.merge(environment) { _, new in new }
        let (status, output) = try Ops.run(try Ops.sluiceBinary(), ["config", "check", "--config", "Config/sluice.yaml"], environment: processEnvironment)
        #expect(status == 0, "\(output)")
        #expect(output.contains("kafka:29092") && output.contains("/models/gemma-3-270m-q4_k_m.gguf"))

        // Prometheus scrapes the worker's port by DNS; Grafana reads that Prometheus.
        let prometheus = try Ops.yaml("ops/prometheus/prometheus.yml")
        let sluiceJob = try #require(Ops.list(prometheus, "scrape_configs").first { Ops.string($0, "job_name") == "sluice" })
        #expect(Ops.list(sluiceJob, "dns_sd_configs").contains { Ops.string($0, "port") == String(configuration.worker.metricsPort) && Ops.list($0, "names").map { "\($0)" } == ["worker"] })
        #expect(Ops.list(services, "prometheus.volumes").contains { "\($0)".hasPrefix("./ops/prometheus/alerts.yml:") })
        let datasource = try #require(Ops.list(try Ops.yaml("ops/grafana/provisioning/datasources/prometheus.yml"), "datasources").first)
        #expect(Ops.string(datasource, "url") == "http://prometheus:9090")
        #expect(Ops.list(services, "prometheus.ports").map { "\($0)" } == ["9090:9090"])
        let dashboardProvider = try #require(Ops.list(try Ops.yaml("ops/grafana/provisioning/dashboards/sluice.yml"), "providers").first)
        #expect(Ops.list(services, "grafana.volumes").map { "\($0)" }.contains("./ops/grafana/dashboards:\(Ops.string(dashboardProvider, "options.path") ?? "?"):ro"))
        let dashboard = try Ops.text("ops/grafana/dashboards/sluice.json")
        #expect(dashboard.contains("\"uid\": \"\(Ops.string(datasource, "uid") ?? "?")\""))
    }

    // MARK: Dockerfile

    @Test("Dockerfile: multi-stage, librdkafka ≥ 2.1.2 as bootstrap builds it, non-root, HEALTHCHECK, and every library the binary needs")
    func dockerfile() throws {
        let lines = try Ops.text("Dockerfile").replacingOccurrences(of: "\\\n", with: " ").split(separator: "\n").map(String.init)
            .filter { !$0.hasPrefix("#") }
        func instructions(_ name: String) -> [String] {
            lines.filter { $0.hasPrefix(name + " ") }.map { String($0.dropFirst(name.count + 1)).trimmingCharacters(in: .whitespaces) }
        }
        let stages = instructions("FROM")
        #expect(stages.count == 2 && stages[0].hasSuffix(" AS build"))
        let finalStage = lines.lastIndex { $0.hasPrefix("FROM ") }!
        let user = try #require(lines[finalStage...].last { $0.hasPrefix("USER ") })
        #expect(user != "USER root" && !user.hasPrefix("USER 0"))

        // Every COPY source from the build context exists.
        for copy in instructions("COPY") where !copy.hasPrefix("--from") {
            let source = String(copy.split(separator: " ")[0])
            #expect(FileManager.default.fileExists(atPath: Ops.root.appendingPathComponent(source).path), "COPY \(source): missing")
        }
        // librdkafka: the version ops/bootstrap installs, new enough.
        let bootstrap = try Ops.text("ops/bootstrap")
        let version = try #require(bootstrap.firstMatch(of: /RDKAFKA_VERSION=([0-9.]+)/)?.output.1)
        #expect(lines.contains { $0.contains("install-librdkafka \(version)") })
        #expect(String(version).compare("2.1.2", options: .numeric) != .orderedAscending)

        let defaults = SluiceConfiguration()
        #expect(instructions("EXPOSE") == [String(defaults.worker.metricsPort)])
        let healthcheck = instructions("HEALTHCHECK").joined()
        #expect(healthcheck.contains("/healthz") && healthcheck.contains("SLUICE_WORKER_METRICS_PORT:-\(defaults.worker.metricsPort)"))
        let known = try Ops.configurationVariables()
        for variable in instructions("ENV").joined(separator: " ").matches(of: /(SLUICE_[A-Z0-9_]+)=/) {
            #expect(known.contains(String(variable.output.1)), "ENV \(variable.output.1) is not a configuration key")
        }
        let compose = try Ops.yaml("docker-compose.yml")
        let command = Ops.list(compose, "services.worker.command").map { "\"\($0)\"" }.joined(separator: ", ")
        #expect(instructions("CMD") == ["[\(command)]"])

        // The runtime stage installs the Debian package of every library that the sluice binary
        // (Swift runtime linked statically in the image) and librdkafka link directly.
        let runtimeInstall = lines[finalStage...].first { $0.contains("apt-get install") } ?? ""
        let binary = try Ops.sluiceBinary()
        var needed: Set<String> = []
        for file in [binary, "/usr/local/lib/librdkafka.so.1"] {
            let (_, dynamic) = try Ops.run("/usr/bin/readelf", ["-d", file])
            for match in dynamic.matches(of: /\(NEEDED\)\s+Shared library: \[([^\]]+)\]/) { needed.insert(String(match.output.1)) }
        }
        let swiftRuntime = /^(libswift|libFoundation|lib_Foundation|libdispatch|libBlocksRuntime)/
        for library in needed.sorted() where library.firstMatch(of: swiftRuntime) == nil && library != "librdkafka.so.1" {
            if ["libc.so.6", "libm.so.6", "ld-linux-x86-64.so.2", "libgcc_s.so.1"].contains(library) { continue }  // in every Debian image
            let (status, owner) = try Ops.run("/bin/sh", ["-c", "f=$(ldconfig -p | awk '$1 == \"\(library)\" {print $NF; exit}'); dpkg -S \"*/$(basename \"$(readlink -f \"$f\")\")\" | head -1"])
            let package = String(owner.split(separator: ":").first ?? "")
            #expect(status == 0 && !package.isEmpty, "no Debian package owns \(library): \(owner)")
            #expect(runtimeInstall.contains(" \(package) ") || runtimeInstall.hasSuffix(" \(package)"), "the runtime image lacks \(package) (for \(library))")
        }
    }

    // MARK: Kubernetes

    @Test("ops/k8s: manifests parse, the ConfigMap is Config/sluice.yaml, names, labels, ports and keys agree")
    func kubernetes() throws {
        let kustomization = try Ops.yaml("ops/k8s/kustomization.yaml")
        var objects: [String: [String: Any]] = [:]  // "Kind/name"
        for case let file as String in Ops.list(kustomization, "resources") {
            for document in try Ops.documents("ops/k8s/\(file)") {
                let kind = try #require(Ops.string(document, "kind"))
                let name = try #require(Ops.string(document, "metadata.name"))
                #expect(Ops.string(document, "apiVersion") != nil)
                objects["\(kind)/\(name)"] = document
            }
        }
        #expect(Set(objects.keys) == ["ConfigMap/sluice-config", "Deployment/sluice-worker", "Service/sluice", "PodDisruptionBudget/sluice-worker",
                                      "ScaledObject/sluice-worker", "ServiceMonitor/sluice"])

        let configMap = try #require(objects["ConfigMap/sluice-config"])
        #expect(Ops.string(configMap, "data.sluice.yaml") == nil)  // the key has a dot: read it directly
        #expect((Ops.mapping(configMap, "data")["sluice.yaml"] as? String) == (try Ops.text("Config/sluice.yaml")),
                "ops/k8s/configmap.yaml is stale: run ops/k8s/render-configmap")
        let rendered = FileManager.default.temporaryDirectory.appendingPathComponent("configmap-\(UUID()).yaml")
        defer { try? FileManager.default.removeItem(at: rendered) }
        #expect(try Ops.run("/bin/bash", ["ops/k8s/render-configmap", rendered.path]).status == 0)
        #expect(try String(contentsOf: rendered, encoding: .utf8) == (try Ops.text("ops/k8s/configmap.yaml")))

        let deployment = try #require(objects["Deployment/sluice-worker"])
        let pod = Ops.mapping(deployment, "spec.template")
        let podLabels = Ops.mapping(pod, "metadata.labels") as? [String: String] ?? [:]
        #expect((Ops.mapping(deployment, "spec.selector.matchLabels") as? [String: String] ?? ["?": "?"]).allSatisfy { podLabels[$0.key] == $0.value })
        let container = try #require(Ops.list(pod, "spec.containers").first)
        #expect(Ops.string(container, "image")?.hasPrefix("sluice:") == true)
        #expect(Ops.list(kustomization, "images").contains { Ops.string($0, "name") == "sluice" })

        var environment: [String: String] = [:]
        let known = try Ops.configurationVariables()
        for variable in Ops.list(container, "env") {
            let name = try #require(Ops.string(variable, "name"))
            #expect(known.contains(name), "\(name) is not a configuration key")
            environment[name] = Ops.string(variable, "value") ?? "from-\(name.lowercased())"
        }
        environment["SLUICE_AUDIT_PSEUDONYM_KEY"] = nil  // secrets: not known here
        environment["SLUICE_AUDIT_SIGNING_KEY"] = nil
        let configuration = try Ops.configuration(environment: environment)

        let args = Ops.list(container, "args").map { "\($0)" }
        #expect(args.first == "run")
        let options = try Ops.options(of: ["run"])
        for option in args where option.hasPrefix("--") { #expect(options.contains(option)) }
        let mounts = Dictionary(uniqueKeysWithValues: Ops.list(container, "volumeMounts").map { (Ops.string($0, "mountPath") ?? "", Ops.string($0, "name") ?? "") })
        let volumes = Set(Ops.list(pod, "spec.volumes").compactMap { Ops.string($0, "name") })
        for name in mounts.values { #expect(volumes.contains(name), "volume \(name) is not defined") }
        #expect(args.contains("/etc/sluice/sluice.yaml") && mounts["/etc/sluice"] == "config")
        #expect(Ops.list(pod, "spec.volumes").contains { Ops.string($0, "name") == "config" && Ops.string($0, "configMap.name") == "sluice-config" })
        #expect(mounts.keys.contains { configuration.audit.db.hasPrefix($0 + "/") })
        #expect(mounts.keys.contains { configuration.worker.model.hasPrefix($0 + "/") })

        let port = try #require(Ops.list(container, "ports").first)
        #expect(Ops.string(port, "containerPort") == String(configuration.worker.metricsPort))
        let portName = try #require(Ops.string(port, "name"))
        #expect(Ops.string(container, "livenessProbe.httpGet.path") == "/healthz")
        #expect(Ops.string(container, "readinessProbe.httpGet.path") == "/readyz")
        #expect(Ops.string(container, "startupProbe.httpGet.path") == "/healthz")
        for probe in ["livenessProbe", "readinessProbe", "startupProbe"] { #expect(Ops.string(container, "\(probe).httpGet.port") == portName) }
        #expect(Ops.value(container, "securityContext.runAsNonRoot") as? Bool == true)
        #expect(Ops.mapping(container, "resources.requests")["cpu"] != nil && Ops.mapping(container, "resources.limits")["memory"] != nil)
        let termination = try #require(Ops.value(pod, "spec.terminationGracePeriodSeconds") as? Int)
        #expect(Duration.seconds(termination) > .milliseconds(configuration.worker.gracePeriodMs))

        let service = try #require(objects["Service/sluice"])
        #expect((Ops.mapping(service, "spec.selector") as? [String: String] ?? ["?": "?"]).allSatisfy { podLabels[$0.key] == $0.value })
        #expect(Ops.list(service, "spec.ports").contains { Ops.string($0, "name") == "metrics" && Ops.string($0, "targetPort") == portName })
        let monitor = try #require(objects["ServiceMonitor/sluice"])
        let serviceLabels = Ops.mapping(service, "metadata.labels") as? [String: String] ?? [:]
        #expect((Ops.mapping(monitor, "spec.selector.matchLabels") as? [String: String] ?? ["?": "?"]).allSatisfy { serviceLabels[$0.key] == $0.value })
        #expect(Ops.list(monitor, "spec.endpoints").contains { Ops.string($0, "port") == "metrics" && Ops.string($0, "path") == "/metrics" })

        let budget = try #require(objects["PodDisruptionBudget/sluice-worker"])
        #expect((Ops.mapping(budget, "spec.selector.matchLabels") as? [String: String] ?? ["?": "?"]).allSatisfy { podLabels[$0.key] == $0.value })

        let scaler = try #require(objects["ScaledObject/sluice-worker"])
        #expect(Ops.string(scaler, "spec.scaleTargetRef.kind") == "Deployment" && Ops.string(scaler, "spec.scaleTargetRef.name") == "sluice-worker")
        #expect(Ops.string(scaler, "spec.maxReplicaCount") == String(configuration.topics.partitions), "maxReplicaCount must equal the partition count")
        let trigger = try #require(Ops.list(scaler, "spec.triggers").first)
        #expect(Ops.string(trigger, "type") == "kafka")
        #expect(Ops.string(trigger, "metadata.consumerGroup") == configuration.kafka.groupId)
        #expect(Ops.string(trigger, "metadata.topic") == configuration.topics.requests.first)
        #expect(Ops.string(trigger, "metadata.bootstrapServers") == configuration.kafka.brokers.joined(separator: ","))
        #expect(Int(Ops.string(trigger, "metadata.lagThreshold") ?? "") ?? 0 > 0)
        #expect(Int(Ops.string(trigger, "metadata.activationLagThreshold") ?? "") ?? 0 > 0)
    }

    // MARK: README

    @Test("the README's configuration reference is the one generated from Config/sluice.yaml")
    func configurationReference() throws {
        let readme = try Ops.text("README.md")
        let begin = "<!-- config-reference:begin (generated: sluice config reference) -->\n"
        let end = "<!-- config-reference:end -->"
        let start = try #require(readme.range(of: begin), "README lacks the configuration reference markers")
        let stop = try #require(readme.range(of: end, range: start.upperBound..<readme.endIndex))
        let expected = ConfigurationReference.markdown(yaml: try Ops.text("Config/sluice.yaml"))
        let current = String(readme[start.upperBound..<stop.lowerBound])
        #expect(current == expected,
                "README's configuration reference is stale: replace it with the output of `sluice config reference`")
        let (status, printed) = try Ops.run(try Ops.sluiceBinary(), ["config", "reference"])
        #expect(status == 0 && printed == expected, "`sluice config reference` prints something else")
        let entries = ConfigurationReference.entries(yaml: try Ops.text("Config/sluice.yaml"))
        #expect(Set(entries.map(\.environmentVariable)) == (try Ops.configurationVariables()))
        #expect(entries.allSatisfy { !$0.description.isEmpty })
    }

    @Test("sluice config check prints the effective configuration with secrets redacted, and names a wrong key")
    func configCheck() throws {
        var environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("SLUICE_") }
        environment["SLUICE_KAFKA_GROUP_ID"] = "from-the-environment"
        environment["SLUICE_KAFKA_SASL_PASSWORD"] = "hunter2-secret"
        let (status, output) = try Ops.run(try Ops.sluiceBinary(), ["config", "check", "--brokers", "flag-host:9092"], environment: environment)
        #expect(status == 0, "\(output)")
        #expect(output.contains("group_id: from-the-environment") && output.contains("flag-host:9092"))
        #expect(!output.contains("hunter2-secret") && output.contains("sasl_password: <redacted>"))
        // librdkafka properties that hold secrets are redacted too; the others are shown.
        environment["SLUICE_KAFKA_PROPERTIES"] = "ssl.key.password=topsecret-1,ssl.key.pem=topsecret-2,sasl.oauthbearer.client.secret=topsecret-3,linger.ms=7"
        let (_, properties) = try Ops.run(try Ops.sluiceBinary(), ["config", "check"], environment: environment)
        #expect(!properties.contains("topsecret") && properties.contains("ssl.key.password: <redacted>"), "\(properties)")
        #expect(properties.contains("linger.ms: '7'") || properties.contains("linger.ms: \"7\""), "\(properties)")
        environment["SLUICE_KAFKA_PROPERTIES"] = nil

        // Without a pseudonym key, `sluice run` refuses to start unless development keys are allowed.
        let (refused, reason) = try Ops.run(try Ops.sluiceBinary(), ["run", "--brokers", "127.0.0.1:1", "--model", "echo"], environment: environment)
        #expect(refused != 0 && reason.contains("audit.pseudonym_key is not set"), "\(reason)")

        environment["SLUICE_WORKER_MAX_BATCH_SIZE"] = "many"
        let (failed, message) = try Ops.run(try Ops.sluiceBinary(), ["config", "check"], environment: environment)
        #expect(failed != 0 && message.contains("worker.max_batch_size"), "\(message)")
    }
}
