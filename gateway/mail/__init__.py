"""Reading a raw mail, pure: bytes in, a frozen `ParsedMessage` out (`parse.parse_message`).

In: the stored raw bytes of one mail. Out: headers decoded once, the body as text and HTML,
attachments (streamed, never held twice), the quoted history split off (`quotes`), the
original of a forwarded or bounced mail (`originals`), addresses (`addresses`).

Guarantees: nothing here touches a socket, a file or the database; malformed input yields
a best-effort result with its defects named, never an exception a caller must guess at.
"""
