-- Indexed search on MySQL / MariaDB (issue #29): a trigram posting table kept by triggers in
-- the same transaction as the row, as SQLite's FTS5 table is (neither engine has a trigram
-- index, and managed MySQL offers no plugins). `customer_trigrams` holds one row per distinct
-- three-character piece of a customer's `search_text` that lies within one field (none
-- spans the U+001F separator, which no stored field contains), so every customer whose text
-- contains a term of three or more characters is in the posting list of each of the term's
-- trigrams. The store intersects the rarest ones and rechecks every candidate with the same
-- LIKE as a scan, so results are exactly the scan's (see src/store/search.rs and
-- docs/architecture.md, "Search on MySQL").
--
-- Pieces are characters (code points), as `substring` counts them in utf8mb4 and Rust's
-- `chars()` does; compared byte for byte (utf8mb4_bin), as the recheck compares.
create table customer_trigrams (
    trigram     varchar(3) not null,
    customer_id bigint     not null,
    primary key (trigram, customer_id)
) engine = InnoDB default charset = utf8mb4 collate = utf8mb4_bin;

-- 1..4000: the start of each piece. A stored search text is at most ~1,600 characters (two
-- names of 255 and an e-mail of 255 from an import, lower-cased).
create table search_positions (
    n integer not null primary key
) engine = InnoDB;

insert into search_positions (n)
select 1 + a.d + 10 * b.d + 100 * c.d + 1000 * e.d
from (select 0 as d union all select 1 union all select 2 union all select 3 union all select 4
      union all select 5 union all select 6 union all select 7 union all select 8 union all select 9) a,
     (select 0 as d union all select 1 union all select 2 union all select 3 union all select 4
      union all select 5 union all select 6 union all select 7 union all select 8 union all select 9) b,
     (select 0 as d union all select 1 union all select 2 union all select 3 union all select 4
      union all select 5 union all select 6 union all select 7 union all select 8 union all select 9) c,
     (select 0 as d union all select 1 union all select 2 union all select 3) e;

-- Each distinct piece once: at the position of its first occurrence (no duplicate to
-- ignore, no temporary table: 105 µs a row against 134 with `distinct`).
insert into customer_trigrams (trigram, customer_id)
select substring(c.search_text, p.n, 3), c.id
from customers c straight_join search_positions p
    on p.n <= char_length(c.search_text) - 2
where locate(substring(c.search_text, p.n, 3), c.search_text) = p.n
  and locate(char(31), substring(c.search_text, p.n, 3)) = 0;

create trigger customers_trigrams_on_insert after insert on customers for each row
insert into customer_trigrams (trigram, customer_id)
select substring(new.search_text, n, 3), new.id
from search_positions
where n <= char_length(new.search_text) - 2
  and locate(substring(new.search_text, n, 3), new.search_text) = n
  and locate(char(31), substring(new.search_text, n, 3)) = 0;

-- An update that changes the text: the pieces it no longer has go (one primary-key delete
-- each), then the ones it did not have come (the next trigger: both engines fire triggers
-- of one event in the order they were created, and FOLLOWS says so). A piece has no U+001F,
-- so it is one of a text's pieces exactly when `locate` finds it in that text. Pieces both
-- texts have stay: a PATCH of the last name rewrites a handful of rows, not all of them.
create trigger customers_trigrams_on_update_remove after update on customers for each row
delete t from search_positions p
join customer_trigrams t
    on t.trigram = substring(old.search_text, p.n, 3) and t.customer_id = old.id
where old.search_text <> new.search_text
  and p.n <= char_length(old.search_text) - 2
  and locate(substring(old.search_text, p.n, 3), new.search_text) = 0;

create trigger customers_trigrams_on_update_add after update on customers for each row
follows customers_trigrams_on_update_remove
insert into customer_trigrams (trigram, customer_id)
select substring(new.search_text, n, 3), new.id
from search_positions
where old.search_text <> new.search_text
  and n <= char_length(new.search_text) - 2
  and locate(substring(new.search_text, n, 3), new.search_text) = n
  and locate(char(31), substring(new.search_text, n, 3)) = 0
  and locate(substring(new.search_text, n, 3), old.search_text) = 0;

create trigger customers_trigrams_on_delete after delete on customers for each row
delete t from search_positions p
join customer_trigrams t
    on t.trigram = substring(old.search_text, p.n, 3) and t.customer_id = old.id
where p.n <= char_length(old.search_text) - 2;
