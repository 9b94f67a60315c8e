"""Research tools built on wnrl, kept out of the core (`import wnrl` never imports them):
the noise-sensitivity study (`study*`, optional extra `study`: pandas, matplotlib,
tbparse) and the benchmark (`benchmark*`, optional extra `bench` for its peer)."""
