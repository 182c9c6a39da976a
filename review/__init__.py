"""The QA review and labelling web app (``lineqa review``): the review queue of flagged parts, decisions with
an append-only audit trail that flow back into the tenant's datasets, label fixes on dataset versions, and
defect dashboards, on the same database and image store as the gateway."""
