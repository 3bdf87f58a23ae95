"""Singer target that lands Amplitude history in PostHog."""
