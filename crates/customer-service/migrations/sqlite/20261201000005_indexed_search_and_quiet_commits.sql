-- Indexed search (issue #13): an FTS5 trigram index over `customers.search_text`, kept by
-- triggers in the same transaction as the row. `case_sensitive 1`: the column is already
-- lower-cased by the application (Unicode-aware), and the term is lower-cased the same way,
-- so the index compares exactly the bytes the LIKE recheck does. External content: the
-- index stores no second copy of the text. Terms of fewer than three characters cannot be
-- looked up in it and scan `customers` instead (see src/store/customers.rs).
-- (PostgreSQL's half of this migration also drops the per-row NOTIFY; SQLite never had one.)
create virtual table customers_search using fts5(
    search_text,
    content = 'customers',
    content_rowid = 'id',
    tokenize = 'trigram case_sensitive 1'
);

insert into customers_search (rowid, search_text) select id, search_text from customers;

create trigger customers_search_on_insert after insert on customers begin
    insert into customers_search (rowid, search_text) values (new.id, new.search_text);
end;

create trigger customers_search_on_delete after delete on customers begin
    insert into customers_search (customers_search, rowid, search_text)
    values ('delete', old.id, old.search_text);
end;

create trigger customers_search_on_update after update of search_text on customers
when old.search_text <> new.search_text begin
    insert into customers_search (customers_search, rowid, search_text)
    values ('delete', old.id, old.search_text);
    insert into customers_search (rowid, search_text) values (new.id, new.search_text);
end;
