module credproxy.local/bench/loadgen

go 1.19
