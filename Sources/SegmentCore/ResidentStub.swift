extension Book {
    public var residentBytes: Int { 0 }  // STUB: replaced by the resident branch
}
