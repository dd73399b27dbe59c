print("meshbus")
