"""Who may see and act on a job, asked of web/permissions.py directly, for every kind of caller.

The HTTP matrices (test_jobs_table.py, test_api.py) check each endpoint; this one checks the rules
themselves on jobs shared with no group, one group and two groups, so a rule that mixes groups up
(a member of any group seeing every shared job) fails here even if an endpoint forgot to ask.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, Group, Permission

from jobtower.models import Job, LocalJob
from jobtower.web import permissions

pytestmark = pytest.mark.django_db

#: caller -> the jobs (by name) it may see. Written out: never derived from the code under test.
SEES = {
    "owner": {"private", "lab", "both", "elsewhere"},
    "lab member": {"lab", "both"},
    "member of both": {"both", "elsewhere"},  # in "other lab" and "elsewhere", not in "lab"
    "outsider": {"elsewhere"},  # in a group of its own: the same as a stranger for the lab's jobs
    "stranger": set(),
    "staff": {"private", "lab", "both", "elsewhere"},
    "holder": {"private", "lab", "both", "elsewhere"},
    "anonymous": set(),
}


@pytest.fixture
def world(django_user_model: Any, job_manager: Any, user: Any) -> tuple[dict[str, Any], dict[str, Job]]:
    lab, other_lab, elsewhere = (Group.objects.create(name=n) for n in ("lab", "other lab", "elsewhere"))
    make = django_user_model.objects.create_user
    people: dict[str, Any] = {"owner": user, "anonymous": AnonymousUser()}
    people["lab member"] = make("lab-member")
    people["lab member"].groups.add(lab)
    people["member of both"] = make("both")
    people["member of both"].groups.add(other_lab, elsewhere)
    people["outsider"] = make("outsider")
    people["outsider"].groups.add(elsewhere)
    people["stranger"] = make("stranger")
    people["staff"] = make("staff", is_staff=True)
    people["holder"] = make("holder")
    people["holder"].user_permissions.add(Permission.objects.get(codename="jobs_table_actions"))
    jobs = {}
    for name, groups in (("private", []), ("lab", [lab]), ("both", [lab, other_lab]), ("elsewhere", [elsewhere])):
        job = job_manager.create_job(name=name, user=user, job_type="BASIC", groups=groups)
        job.save()
        jobs[name] = job
    return people, jobs


@pytest.mark.parametrize("who", sorted(SEES))
def test_each_caller_sees_and_may_act_on_exactly_its_jobs(world: Any, who: str) -> None:
    people, jobs = world
    caller = people[who]
    assert {name for name, job in jobs.items() if permissions.can_access(caller, job)} == SEES[who]
    assert {job.name for job in permissions.visible_jobs(caller)} == SEES[who]
    # a queryset given in is narrowed, never widened
    only_lab = Job.objects.filter(name="lab")
    assert {job.name for job in permissions.visible_jobs(caller, only_lab)} == SEES[who] & {"lab"}


def test_a_shared_job_is_listed_once_for_a_member_of_two_of_its_groups(world: Any) -> None:
    people, jobs = world
    both = Group.objects.get(name="other lab")
    people["lab member"].groups.add(both)
    names = [job.name for job in permissions.visible_jobs(people["lab member"])]
    assert sorted(names) == ["both", "lab"]


@pytest.mark.parametrize(("who", "manager"), [("owner", False), ("lab member", False), ("outsider", False),
                                              ("staff", True), ("holder", True), ("anonymous", False)])
def test_only_staff_and_holders_of_the_permission_manage_every_job(world: Any, who: str, manager: bool) -> None:
    people, _ = world
    assert permissions.is_manager(people[who]) is manager


def test_running_code_needs_add_job_and_an_app_needs_one_of_its_permissions(world: Any, django_user_model: Any) -> None:
    people, jobs = world
    basic = type(jobs["lab"])
    assert permissions.may_run_code(people["stranger"], basic) is True  # BASIC jobs run nothing
    assert permissions.may_run_code(people["stranger"], LocalJob) is False
    assert permissions.may_run_code(people["staff"], LocalJob) is False  # staff is not add_job
    assert permissions.may_run_code(people["anonymous"], basic) is False
    runner = django_user_model.objects.create_user("runner")
    runner.user_permissions.add(Permission.objects.get(codename="add_job"))
    runner = django_user_model.objects.get(pk=runner.pk)  # permissions are cached per user object
    assert permissions.may_run_code(runner, LocalJob) is True
    assert permissions.may_use_app(runner, "jobtower") is True
    assert permissions.may_use_app(runner, "my_first_app") is False
    assert permissions.may_use_app(people["staff"], "my_first_app") is True
    assert permissions.may_use_app(people["stranger"], "jobtower") is False
    assert permissions.may_use_app(people["anonymous"], "jobtower") is False
