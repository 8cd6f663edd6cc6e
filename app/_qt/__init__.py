"""Qt views (PySide6 through qtpy); only the app imports these, never core."""
