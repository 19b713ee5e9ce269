module ssed-bench/go-hijack

go 1.19
