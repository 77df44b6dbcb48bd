"""One module per chapter: its profiles (paper / quick / smoke) and the steps its notebook calls."""
