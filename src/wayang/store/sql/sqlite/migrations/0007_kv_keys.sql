-- Version 7: the keys of the key-value table on their own.
--
-- kv is a WITHOUT ROWID table, so its rows, values and all, are its primary key's b-tree:
-- counting a namespace or looking through its keys read every value with them (the server's
-- run queue holds a prepared run of a few kilobytes a key: 12 ms to count 8,000 of them). This
-- index holds the keys alone, so counting and searching them reads little (0.2 ms).
CREATE INDEX kv_keys ON kv (namespace, key);
