"""Development tooling: the sample-data generator (`chat-analytics generate`, `make run` on an empty home)."""
