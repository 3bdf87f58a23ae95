"""Singer tap for Amplitude's raw event history."""
