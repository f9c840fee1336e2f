"""Golden model: the bit-exact executable specification of the engine (numpy, integers)."""
