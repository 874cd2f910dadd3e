import Foundation
import PackagePlugin

/// Writes `BuildInfo.commit`, the git commit the binary is built from (`-dirty` when the
/// working tree has changes; `unknown` outside a git checkout), so that `segmentd --version`
/// and `rpc.hello` can say exactly what runs. Runs before every build; the file is rewritten
/// only when the commit changed, so an unchanged checkout recompiles nothing.
@main
struct GitCommit: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: any Target) throws -> [Command] {
        let output = context.pluginWorkDirectoryURL.appending(path: "GitCommit")
        let script = """
            mkdir -p "$2"
            commit=$(git -C "$1" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
            if [ "$commit" != unknown ] && [ -n "$(git -C "$1" status --porcelain --untracked-files=no 2>/dev/null | head -n 1)" ]; then commit="$commit-dirty"; fi
            line="enum BuildInfo { static let commit = \\"$commit\\" }"
            [ "$(cat "$2/BuildInfo.swift" 2>/dev/null)" = "$line" ] || printf '%s\\n' "$line" > "$2/BuildInfo.swift"
            """
        return [
            .prebuildCommand(
                displayName: "Recording the git commit",
                executable: URL(fileURLWithPath: "/bin/sh"),
                arguments: ["-c", script, "sh", context.package.directoryURL.path, output.path],
                outputFilesDirectory: output)
        ]
    }
}
