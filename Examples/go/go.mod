module meshbus.example/consumer

go 1.19
