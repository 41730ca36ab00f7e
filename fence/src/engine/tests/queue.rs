//! The output queue.
