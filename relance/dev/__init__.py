"""Developer tools: the dev stack behind `make run`, its supervisor, the dev mail inbox, the seeding
helpers of the tests and benchmarks. Nothing in the product imports them."""
