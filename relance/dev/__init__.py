"""Developer tools: the dev stack behind `make run`, its supervisor, the dev mail inbox. Nothing in the product imports them."""
