-- StepSuspended (code W, SPEC 8.3) joins the event types event_log accepts.
-- depends: 0007_ai_calls

ALTER TABLE event_log DROP CONSTRAINT IF EXISTS event_log_event_type_check;
ALTER TABLE event_log ADD CONSTRAINT event_log_event_type_check CHECK (
    event_type = lower(event_type)
    AND event_type IN (
        'flowinitialized', 'stepstarted', 'stepfinished', 'stepfailed',
        'stepsignal', 'propertypreferenceassigned', 'retryscheduled', 'flowcompleted',
        'stepsuspended'
    )
);
