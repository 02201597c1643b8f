"""Building blocks of `chat-analytics generate`: realistic, seeded sample extracts.

The entry point is `chat_analytics.devtools.generate.generate`; the modules here each own one stage:
`knobs` (realism constants), `categories` (the category tree), `chats` (vectorised chat sampling and
the per-file row plan), `csvtext` (vectorised CSV formatting), `dirty` (known defects) and `truth`
(the expected outcomes written to `landing/ground_truth.json`).
"""
