"""personaloom's Textual dashboard."""
