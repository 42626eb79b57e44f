-- «Вызов»: a fact's recording day ("as known on") is Moscow's date, as for «Заступник»
-- (zastupnik::RECORDING_ZONE), no longer the UTC date: a ministry analyst asking what the
-- dashboard knew on a day means that day in Moscow, and entries made from 00:00 to 03:00
-- Moscow time belong to it.
--
-- The projection is rebuilt from the log: its tables are emptied and its checkpoint goes
-- back to the start.

TRUNCATE vyzov.region_day, vyzov.region_late, vyzov.region_known, vyzov.municipality_month,
         vyzov.municipality_fact, vyzov.aid_now, vyzov.aid_known_month, vyzov.aid_known,
         vyzov.track, vyzov.horizon, vyzov.written;
UPDATE projection_checkpoint SET tx_id = 0, position = 0, applied = 0, updated_at = now()
 WHERE name = 'vyzov';
