"""One partition per business date: the end-of-day snapshot taken at 00:00 UTC.

``end_offset=1`` makes today's date a partition as soon as the day starts: the
snapshot of date D is complete at 00:00 UTC of D.
"""

import dagster as dg

business_dates = dg.DailyPartitionsDefinition(start_date="2016-01-01", end_offset=1)
