-- «Вызов»: region_now (the regions' grains 0 and 1 as known now) has not been read since
-- 0016 (region_day holds their running totals); the projection keeps the day cells in
-- memory as deltas and no longer writes this table. Nothing is rebuilt.
DROP TABLE vyzov.region_now;
