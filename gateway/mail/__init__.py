"""Reading a raw mail, pure: bytes in, a frozen `ParsedMessage` out (`parse.parse_message`).

In: the stored raw bytes of one mail. Out: headers decoded once, the body as text and HTML,
attachments (streamed, never held twice), the quoted history split off (`quotes`), the
original of a forwarded or bounced mail (`originals`), addresses (`addresses`).

The MIME modules, in the order a mail meets them: `mime_outline` pre-scans the raw bytes
(limits, spans), `mime_walk` is the one bounded walk over the parsed tree (the parser's and
the classifiers'), `mime_body` interprets it into text, HTML and attachments, `mime_text`
turns bytes and header values into text, `mime_html` sanitizes HTML or reads it as text,
`mime_stream` decodes large bodies piece by piece.

Guarantees: nothing here touches a socket, a file or the database; malformed input yields
a best-effort result with its defects named, never an exception a caller must guess at.
"""
