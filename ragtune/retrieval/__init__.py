"""First stages: dense search, BM25 (+ stemmer), fusion, mining, and the embedding cache."""
