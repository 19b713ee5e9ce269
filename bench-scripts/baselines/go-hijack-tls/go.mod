module ssed-bench/go-hijack-tls

go 1.19
