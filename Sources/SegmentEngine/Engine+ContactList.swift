import SegmentCore
import WireJSON

extension Engine {
    /// `contacts.list`: contacts in slot order (the order they were created), `limit` at a
    /// time after cursor `after`, optionally only those matching `filters` (the rule alone,
    /// as the `all` audience) and whose email starts with `emailPrefix` (case-insensitively).
    /// Each item is the `contacts.get` document; `next` is the last item's cursor when more
    /// may follow, else null.
    public func listContacts(after: Int64?, limit: Int, filters: JSONValue?, emailPrefix: String?) throws(SegmentError) -> JSONValue {
        let book = snapshot
        var candidates = book.alive
        if let filters {
            candidates = try compile(filters: filters, book: book).resolve(in: book, at: now, within: book.alive)
        }
        let prefix = emailPrefix?.lowercased()
        var items: [JSONValue] = []
        var last = -1
        var more = false
        let start = after.map { Int($0) + 1 } ?? 0
        var wordIndex = start >> 6
        let words = (book.slotCount + 63) >> 6
        scan: while wordIndex < words {
            var word = candidates.word(at: wordIndex)
            if wordIndex == start >> 6 { word &= ~UInt64(0) << UInt64(start & 63) }
            while word != 0 {
                let slot = wordIndex << 6 | word.trailingZeroBitCount
                word &= word &- 1
                if let prefix, !book.emails[slot].lowercased().hasPrefix(prefix) { continue }
                guard items.count < limit else {
                    more = true
                    break scan
                }
                items.append(render(slot: slot, book: book))
                last = slot
            }
            wordIndex += 1
        }
        return ["items": .array(items), "next": more ? .int(Int64(last)) : .null]
    }
}
