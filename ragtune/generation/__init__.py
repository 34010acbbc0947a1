"""Generation: grounded answers and synthetic queries from a causal LM."""
