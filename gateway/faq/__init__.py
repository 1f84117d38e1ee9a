"""The FAQ: categories and articles in Markdown, full-text search, answers by mail.

- `text`: words, stems (Snowball, German and English), stop words, snippets (pure)
- `markdown`: Markdown to sanitized HTML and plain text (pure)
- `source`: FAQ files (Markdown with front matter) read and checked, written for export
- `store`: articles saved with their search index and vocabulary in the caller's transaction;
  votes
- `search`: full-text search on SQLite (FTS5) and PostgreSQL (tsvector), typo correction,
  the acknowledgment's suggestions
- `queries`: what the web pages and `faq list` read
- `mail`: answering mail to the FAQ address, and "not solved" replies
"""
