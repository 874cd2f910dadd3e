import WireJSON

/// A value that can estimate the heap memory it holds: what `Book.residentBytes` adds up, the
/// figure a server reports per book.
///
/// `residentBytes` is the heap the value owns *beyond its own inline size* (its stride is
/// counted by whoever holds it: an array's buffer, a struct's parent). It counts allocated
/// storage (an array's capacity, a hash table's buckets), not only what is in use, with
/// Swift's 64-bit layouts: 16 bytes of object header, 32 bytes of header on an array buffer or
/// a native string, strings of up to 15 UTF-8 bytes stored inline. The `ResidentBytes` helpers
/// apply these layouts to strings, arrays, dictionaries and sets.
///
/// It is an estimate. It leaves out allocator rounding and fragmentation, storage shared with
/// another value (a bitmap block two sets share, a chunk a snapshot shares with the previous
/// one: each holder counts it), bridged or spare string capacity, and anything a type's own
/// conformance says it leaves out.
///
/// **Plugin authors**: the part a provider stores with `Book.setPart` counts only if its type
/// conforms. A part that does not conform counts 0 (only its existential box is counted), so
/// an index a provider forgets to conform makes the book look smaller than it is.
///
/// ```swift
/// struct ScoreIndex: Sendable, ResidentSize {
///     var scores = ChunkedArray<Double>()
///     var tiers: [String: ContactSet] = [:]
///     var residentBytes: Int { scores.residentBytes + ResidentBytes.dictionary(tiers) }
/// }
/// ```
public protocol ResidentSize {
    /// Estimated heap bytes held beyond the value's inline size.
    var residentBytes: Int { get }
}

/// Heap layouts of the standard containers, for `ResidentSize` conformances.
///
/// Elements that are `String`s or `ResidentSize` values add their own heap; any other element
/// counts its stride only.
public enum ResidentBytes {
    /// Swift object header: metadata pointer and reference counts.
    public static let objectHeader = 16
    /// Header of an array buffer or a native string's storage (object header, count, capacity).
    public static let bufferHeader = 32
    /// Dictionary and set storage header (counts, scale, age, seed, key and value pointers).
    static let hashHeader = 64

    /// A class instance whose stored properties take `properties` bytes.
    public static func object(properties: Int) -> Int { objectHeader + properties }

    /// A string's out-of-line storage: none up to 15 UTF-8 bytes (stored inline in the
    /// 16-byte `String`), else a header and the UTF-8 with its NUL terminator.
    public static func string(_ s: String) -> Int {
        let n = s.utf8.count
        return n <= 15 ? 0 : bufferHeader + n + 1
    }

    /// The heap `value` holds beyond its inline size: a string's storage, a `ResidentSize`'s
    /// own figure, 0 for anything else.
    public static func heap<T>(_ value: T) -> Int {
        if let s = value as? String { return string(s) }
        if let sized = value as? any ResidentSize { return sized.residentBytes }
        return 0
    }

    /// Whether elements of type `T` can hold heap `heap(_:)` knows how to count.
    static func counts<T>(_ type: T.Type) -> Bool { T.self == String.self || T.self is any ResidentSize.Type }

    /// An array's buffer (its capacity, not its count) and its elements' heap.
    public static func array<T>(_ a: [T]) -> Int {
        guard a.capacity > 0 else { return 0 }  // the shared empty buffer
        let buffer = bufferHeader + a.capacity * MemoryLayout<T>.stride
        // A string column (millions of emails) is summed without a dynamic cast per element.
        if T.self == String.self { return unsafeBitCast(a, to: [String].self).reduce(buffer) { $0 + string($1) } }
        guard counts(T.self) else { return buffer }
        return a.reduce(buffer) { $0 + heap($1) }
    }

    /// An array's buffer and the heap `element` says each element holds.
    public static func array<T>(_ a: [T], element: (T) -> Int) -> Int {
        guard a.capacity > 0 else { return 0 }
        return a.reduce(bufferHeader + a.capacity * MemoryLayout<T>.stride) { $0 + element($1) }
    }

    /// A dictionary's hash table (buckets for its capacity, each a key and a value, plus the
    /// occupancy bitmap) and its keys' and values' heap.
    public static func dictionary<Key, Value>(_ d: [Key: Value]) -> Int {
        guard d.capacity > 0 else { return 0 }  // the shared empty storage
        let table = hashTable(capacity: d.capacity, stride: MemoryLayout<Key>.stride + MemoryLayout<Value>.stride)
        let keys = counts(Key.self), values = counts(Value.self)
        guard keys || values else { return table }
        return d.reduce(table) { $0 + (keys ? heap($1.key) : 0) + (values ? heap($1.value) : 0) }
    }

    /// A set's hash table and its members' heap.
    public static func set<Element>(_ s: Set<Element>) -> Int {
        guard s.capacity > 0 else { return 0 }
        let table = hashTable(capacity: s.capacity, stride: MemoryLayout<Element>.stride)
        guard counts(Element.self) else { return table }
        return s.reduce(table) { $0 + heap($1) }
    }

    /// Native hash storage: a power-of-two bucket count at most 3/4 full, a bit per bucket.
    static func hashTable(capacity: Int, stride: Int) -> Int {
        var buckets = 1
        while buckets * 3 < capacity * 4 { buckets <<= 1 }
        return hashHeader + (buckets + 63) / 64 * 8 + buckets * stride
    }

    /// A value stored as `any …`: out of line, in a box of its own, when it does not fit the
    /// existential's three inline words; plus whatever heap the value holds.
    public static func existential<T>(_ value: T) -> Int {
        let boxed = MemoryLayout<T>.size > 3 * MemoryLayout<Int>.size || MemoryLayout<T>.alignment > MemoryLayout<Int>.alignment
        return (boxed ? objectHeader + MemoryLayout<T>.size : 0) + heap(value)
    }
}

extension JSONValue: ResidentSize {
    /// Strings, arrays and objects out of line, recursively.
    public var residentBytes: Int {
        switch self {
        case .null, .bool, .int, .double: 0
        case .string(let s): ResidentBytes.string(s)
        case .array(let a): ResidentBytes.array(a)
        case .object(let o): ResidentBytes.dictionary(o)
        }
    }
}
