"""RollbackAlias walks back one change at a time (the alias history as a stack)."""

import pytest

from services.common.errors import FailedPrecondition, NotFound
from services.registry_svc.domain.aliases import rollback_target
from services.registry_svc.domain.model import AliasAction

SET, DELETED, ROLLED_BACK = AliasAction.SET, AliasAction.DELETED, AliasAction.ROLLED_BACK


def test_rollback_goes_back_one_change_each_time():
    history = [(SET, 1), (SET, 2), (SET, 3)]
    assert rollback_target("m", "prod", history) == 2
    history.append((ROLLED_BACK, 2))
    assert rollback_target("m", "prod", history) == 1
    history.append((ROLLED_BACK, 1))
    with pytest.raises(FailedPrecondition, match="no earlier version"):
        rollback_target("m", "prod", history)


def test_rollback_after_a_delete_restores_the_alias():
    assert rollback_target("m", "prod", [(SET, 4), (DELETED, None)]) == 4


def test_first_set_has_nothing_to_go_back_to():
    with pytest.raises(FailedPrecondition):
        rollback_target("m", "prod", [(SET, 1)])


def test_a_new_set_after_rollbacks_stacks_on_top():
    history = [(SET, 1), (SET, 2), (ROLLED_BACK, 1), (SET, 5)]
    assert rollback_target("m", "prod", history) == 1


def test_unknown_alias_is_not_found():
    with pytest.raises(NotFound):
        rollback_target("m", "prod", [])
