import Foundation

/// The summary an import prints to stdout: every row read in exactly one count, the failed
/// lines, and where to resume a stopped import.
extension Importer {
    /// The summary printed to stdout. `resumeCommand` gives the command line that resumes at a line.
    func summary(file: String, verbose: Bool, defined: [FieldInfo] = [], resumeCommand: (Int) -> String) -> String {
        let elapsed = progress.elapsed
        let name = file == "-" ? "standard input" : file
        let stopped = stop != nil || inputFailed
        var out = "\(stopped ? "Import of \(name) stopped" : "Imported \(name)"): \(ProgressLine.count(rows)) row\(rows == 1 ? "" : "s")"
        if restUnread { out += " read" }
        out += " in \(String(format: "%.1f", elapsed)) s" + (elapsed >= 0.05 ? " (\(ProgressLine.rate(Double(rows), over: elapsed)) rows/s)\n" : "\n")
        if !defined.isEmpty { out += "Defined fields: " + defined.map { "\($0.name) (\($0.type))" }.joined(separator: ", ") + "\n" }
        func count(_ label: String, _ n: Int, _ note: String = "", always: Bool = false) {
            guard always || n > 0 else { return }
            out += "  " + (label + ":").padding(toLength: 13, withPad: " ", startingAt: 0) + "\(n)" + (note.isEmpty ? "" : "  (\(note))") + "\n"
        }
        count("created", created, always: true)
        count("updated", updated, always: true)
        count("failed", failedCount, always: true)
        if case .refused(let reason)? = stop { count("refused", refused, "not written: \(reason)") } else { count("refused", refused, "not written") }
        count("unconfirmed", unconfirmed, "sent, but no reply came: maybe written")
        count("not sent", notSent, restUnread ? "the import stopped; the input after them was not read" : "the import stopped")
        count("skipped", skipped, "before --resume-at \(resumeAt)")
        let sorted = failures.sorted { $0.line < $1.line }
        let shown = verbose ? sorted[...] : sorted.prefix(Self.shown)
        if !shown.isEmpty { out += "Failed rows:\n" }
        for failure in shown {
            out += "  line \(failure.line): \(failure.message.replacingOccurrences(of: "\n", with: "\\n"))\n"
        }
        if shown.count < failedCount { out += "  … and \(failedCount - shown.count) more (--verbose lists them all)\n" }
        if stopped {
            if let resume = resumeLine {
                out += "Last line certainly in: \(resume - 1) (every row before line \(resume) was imported or is listed as failed)\n"
                out += "To resume: \(resumeCommand(resume))\n"
            } else {
                out += "Every row read is in (imported or listed as failed).\n"
            }
        }
        return out
    }
}
