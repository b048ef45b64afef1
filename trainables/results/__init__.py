"""The sweep folder, one owner: its layout and file formats, and reading it back."""
