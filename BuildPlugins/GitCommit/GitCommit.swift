import Foundation
import PackagePlugin

/// Writes `BuildInfo.commit`, the git commit the binary is built from (`-dirty` when tracked
/// files have changes; `unknown` outside a git checkout or without git), so that
/// `segmentd --version` and `rpc.hello` say exactly what runs.
///
/// A build command whose inputs are git's record of HEAD and its index: it runs again when a
/// commit, checkout or `git add` moves them (a prebuild command would run only when the build
/// plan is remade, and went stale).
@main
struct GitCommit: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: any Target) throws -> [Command] {
        let package = context.package.directoryURL
        let output = context.pluginWorkDirectoryURL.appending(path: "BuildInfo.swift")
        let git = package.appending(path: ".git")
        let inputs = ["HEAD", "logs/HEAD", "index"].map { git.appending(path: $0) }
            .filter { FileManager.default.fileExists(atPath: $0.path) }
        let script = """
            PATH=/usr/bin:/bin:/usr/local/bin:$PATH
            commit=$(git --no-optional-locks -C "$1" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
            if [ "$commit" != unknown ] && [ -n "$(git --no-optional-locks -C "$1" status --porcelain --untracked-files=no 2>/dev/null | head -n 1)" ]; then commit="$commit-dirty"; fi
            printf 'enum BuildInfo { static let commit = "%s" }\\n' "$commit" > "$2"
            """
        return [
            .buildCommand(
                displayName: "Recording the git commit",
                executable: URL(fileURLWithPath: "/bin/sh"),
                arguments: ["-c", script, "sh", package.path, output.path],
                inputFiles: inputs,
                outputFiles: [output])
        ]
    }
}
