"""Create the catalogue, runs and job logs

Revision ID: 0001
Revises: 
"""

import sqlalchemy as sa
from alembic import op

import importer.schema

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_budget',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('next_slot', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('import_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('batch_size', sa.Integer(), nullable=False),
    sa.Column('delay_seconds', sa.Float(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('step', sa.Integer(), server_default='0', nullable=False),
    sa.Column('cursor_series', sa.Integer(), server_default='0', nullable=False),
    sa.Column('cursor_id', sa.Integer(), server_default='0', nullable=False),
    sa.Column('successor_sent', sa.Boolean(), server_default='0', nullable=False),
    sa.Column('draining_since', importer.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('total', sa.Integer(), server_default='0', nullable=False),
    sa.Column('selected', sa.Integer(), server_default='0', nullable=False),
    sa.Column('dispatched', sa.Integer(), server_default='0', nullable=False),
    sa.Column('batches', sa.Integer(), server_default='0', nullable=False),
    sa.Column('imported', sa.Integer(), server_default='0', nullable=False),
    sa.Column('not_found', sa.Integer(), server_default='0', nullable=False),
    sa.Column('invalid', sa.Integer(), server_default='0', nullable=False),
    sa.Column('failed', sa.Integer(), server_default='0', nullable=False),
    sa.Column('discovered', sa.Integer(), server_default='0', nullable=False),
    sa.Column('started_at', importer.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('heartbeat_at', importer.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', importer.schema.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('import_runs', schema=None) as batch_op:
        batch_op.create_index('ux_import_runs_active', ['kind'], unique=True, postgresql_where=sa.text("status = 'running'"), sqlite_where=sa.text("status = 'running'"))

    op.create_table('job_logs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', importer.schema.UTCDateTime(timezone=True), nullable=False),
    sa.Column('level', sa.String(length=10), nullable=False),
    sa.Column('job_class', sa.String(length=200), nullable=True),
    sa.Column('message_id', sa.String(length=64), nullable=True),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=True),
    sa.Column('duration_ms', sa.Float(), nullable=True),
    sa.Column('item_kind', sa.String(length=16), nullable=True),
    sa.Column('item_id', sa.Integer(), nullable=True),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('context', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('job_logs', schema=None) as batch_op:
        batch_op.create_index('ix_job_logs_created_at', ['created_at'], unique=False)
        batch_op.create_index('ix_job_logs_job_class', ['job_class', 'created_at'], unique=False)
        batch_op.create_index('ix_job_logs_run_id', ['run_id', 'id'], unique=False)
        batch_op.create_index('ix_job_logs_status', ['status', 'created_at'], unique=False)

    op.create_table('series',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tvmaze_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('type', sa.String(length=64), nullable=True),
    sa.Column('language', sa.String(length=64), nullable=True),
    sa.Column('genres', sa.JSON(), nullable=True),
    sa.Column('status', sa.String(length=64), nullable=True),
    sa.Column('runtime', sa.Integer(), nullable=True),
    sa.Column('premiered', sa.Date(), nullable=True),
    sa.Column('ended', sa.Date(), nullable=True),
    sa.Column('official_site', sa.Text(), nullable=True),
    sa.Column('network', sa.Text(), nullable=True),
    sa.Column('summary', sa.Text(), nullable=True),
    sa.Column('tvmaze_updated', sa.BigInteger(), nullable=True),
    sa.Column('data_last_updated_at', importer.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=True),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('failed_runs', sa.Integer(), server_default='0', nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('last_run_id', sa.Integer(), nullable=True),
    sa.Column('checked_at', importer.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', importer.schema.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tvmaze_id')
    )
    with op.batch_alter_table('series', schema=None) as batch_op:
        batch_op.create_index('ix_series_missing', ['id'], unique=False, postgresql_where=sa.text('data_last_updated_at IS NULL'), sqlite_where=sa.text('data_last_updated_at IS NULL'))

    op.create_table('episodes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('series_id', sa.Integer(), nullable=False),
    sa.Column('tvmaze_id', sa.Integer(), nullable=False),
    sa.Column('season', sa.Integer(), nullable=True),
    sa.Column('number', sa.Integer(), nullable=True),
    sa.Column('name', sa.Text(), nullable=True),
    sa.Column('type', sa.String(length=64), nullable=True),
    sa.Column('airdate', sa.Date(), nullable=True),
    sa.Column('airtime', sa.String(length=5), nullable=True),
    sa.Column('runtime', sa.Integer(), nullable=True),
    sa.Column('summary', sa.Text(), nullable=True),
    sa.Column('data_last_updated_at', importer.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=True),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('failed_runs', sa.Integer(), server_default='0', nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('last_run_id', sa.Integer(), nullable=True),
    sa.Column('checked_at', importer.schema.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', importer.schema.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['series_id'], ['series.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('tvmaze_id')
    )
    with op.batch_alter_table('episodes', schema=None) as batch_op:
        batch_op.create_index('ix_episodes_missing', ['series_id', 'id'], unique=False, postgresql_where=sa.text('data_last_updated_at IS NULL'), sqlite_where=sa.text('data_last_updated_at IS NULL'))



def downgrade() -> None:
    with op.batch_alter_table('episodes', schema=None) as batch_op:
        batch_op.drop_index('ix_episodes_missing', postgresql_where=sa.text('data_last_updated_at IS NULL'), sqlite_where=sa.text('data_last_updated_at IS NULL'))

    op.drop_table('episodes')
    with op.batch_alter_table('series', schema=None) as batch_op:
        batch_op.drop_index('ix_series_missing', postgresql_where=sa.text('data_last_updated_at IS NULL'), sqlite_where=sa.text('data_last_updated_at IS NULL'))

    op.drop_table('series')
    with op.batch_alter_table('job_logs', schema=None) as batch_op:
        batch_op.drop_index('ix_job_logs_status')
        batch_op.drop_index('ix_job_logs_run_id')
        batch_op.drop_index('ix_job_logs_job_class')
        batch_op.drop_index('ix_job_logs_created_at')

    op.drop_table('job_logs')
    with op.batch_alter_table('import_runs', schema=None) as batch_op:
        batch_op.drop_index('ux_import_runs_active', postgresql_where=sa.text("status = 'running'"), sqlite_where=sa.text("status = 'running'"))

    op.drop_table('import_runs')
    op.drop_table('api_budget')
