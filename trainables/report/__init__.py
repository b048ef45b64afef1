"""reports/<name>/: report.md, report.html and figures from a sweep."""
