//! TODO(part 1): filled in by its own commit.
