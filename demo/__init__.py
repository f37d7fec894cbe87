"""The boot simulation behind `make demo` (README, "Two commands"), also used by the system test."""
