"""Object store backends behind IObjectStore."""
