"""The boot simulation behind `make demo` (SPEC section 9), also used by the system test."""
