"""Authentication of data-plane callers: virtual keys, their hashing, the in-process cache."""
