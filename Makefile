# Same commands as CI; pass extra arguments with ARGS="...", e.g. make test ARGS="-k mqtt".

.PHONY: demo test lint bench

demo:
	bash scripts/demo $(ARGS)

test:
	bash scripts/test $(ARGS)

lint:
	bash scripts/lint

bench:
	bash scripts/bench $(ARGS)
