//! Nearest neighbours: exact (blocked, multi-threaded) and approximate, one interface.
