//! Root-only integration tests live in tests/tests/.
