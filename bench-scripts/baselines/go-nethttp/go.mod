module ssed-bench/go-nethttp

go 1.19
