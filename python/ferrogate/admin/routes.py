"""THE admin route table. A route added here without a permission cannot exist (the field is
required), and a test walks every route with every role against :data:`~.rbac.GRANTS`."""

from __future__ import annotations

from ferrogate.admin import guardrails as g
from ferrogate.admin import llm as L
from ferrogate.admin import llm_models as LM
from ferrogate.admin import mcp as M
from ferrogate.admin import mcp_models as MM
from ferrogate.admin import models as m
from ferrogate.admin.rbac import Permission as P
from ferrogate.admin.service import AdminService as S
from ferrogate.admin.table import AdminRoute as R
from ferrogate.config import ModelGroup, Upstream
from ferrogate.mcp.policy import ToolPolicy

TEAM = "/admin/v1/teams/{team_id}"
USER = "/admin/v1/users/{user_id}"
KEY = "/admin/v1/keys/{key_id}"
GUARD = "/admin/v1/guardrails"
TEAM_G = TEAM + "/guardrails"
KEY_G = KEY + "/guardrails"
GG, GD, GO = g.GuardrailGlobal, g.GuardrailOverride, g.GuardrailOverrideOut
LLM = "/admin/v1/llm"
UP, MG, RULES = LLM + "/upstreams", LLM + "/model_groups", LLM + "/rules"
UPN, MGN, DQ, SL = UP + "/{name}", MG + "/{name}", LM.DeleteQuery, ("name",)  # SL: a name may hold "/"
MCP = "/admin/v1/mcp"
SRV, POL = MCP + "/servers", MCP + "/policies/{team_id}"
SRVN, MSO, TP = SRV + "/{id}", MM.McpServerOut, ToolPolicy

ROUTES: tuple[R, ...] = (
    R("POST", "/admin/v1/teams", P.TEAMS_WRITE, "Create a team", m.TeamOut, S.create_team, m.TeamCreate, status=201),
    R("GET", "/admin/v1/teams", P.TEAMS_READ, "List teams", m.TeamList, S.list_teams, query=m.TeamQuery),
    R("GET", TEAM, P.TEAMS_READ, "Get a team", m.TeamOut, S.get_team),
    R("PATCH", TEAM, P.TEAMS_WRITE, "Update a team", m.TeamOut, S.update_team, m.TeamUpdate),
    R("DELETE", TEAM, P.TEAMS_WRITE, "Delete a team (it must have no users or keys)", m.Deleted, S.delete_team),
    R("POST", "/admin/v1/users", P.USERS_WRITE, "Create a user", m.UserOut, S.create_user, m.UserCreate, status=201),
    R("GET", "/admin/v1/users", P.USERS_READ, "List users", m.UserList, S.list_users, query=m.UserQuery),
    R("GET", USER, P.USERS_READ, "Get a user", m.UserOut, S.get_user),
    R("PATCH", USER, P.USERS_WRITE, "Update a user", m.UserOut, S.update_user, m.UserUpdate),
    R("DELETE", USER, P.USERS_WRITE, "Delete a user (it must have no keys)", m.Deleted, S.delete_user),
    R("POST", "/admin/v1/keys", P.KEYS_WRITE, "Create a key", m.KeySecret, S.create_key, m.KeyCreate, status=201),
    R("GET", "/admin/v1/keys", P.KEYS_READ, "List keys", m.KeyList, S.list_keys, query=m.KeyQuery),
    R("GET", KEY, P.KEYS_READ, "Get a key", m.KeyOut, S.get_key),
    R("PATCH", KEY, P.KEYS_WRITE, "Update a key", m.KeyOut, S.update_key, m.KeyUpdate),
    R("DELETE", KEY, P.KEYS_WRITE, "Delete a key", m.Deleted, S.delete_key),
    R("POST", KEY + "/revoke", P.KEYS_WRITE, "Revoke a key (refused within 1 s everywhere)", m.KeyOut, S.revoke_key),
    R("POST", KEY + "/rotate", P.KEYS_WRITE, "Rotate a key's secret", m.KeySecret, S.rotate_key, m.KeyRotate),
    R("GET", "/admin/v1/usage", P.USAGE_READ, "Usage and cost sums", m.UsageList, S.usage, query=m.UsageQuery),
    R("GET", "/admin/v1/audit", P.AUDIT_READ, "Audit trail", m.AuditList, S.list_audit, query=m.AuditQuery),
    R("GET", UP, P.LLM_READ, "Upstreams in force, their deployments and health", LM.UpstreamList, L.list_upstreams),
    R("PUT", UPN, P.LLM_WRITE, "Add or replace an upstream", LM.UpstreamOut, L.put_upstream, Upstream, slashes=SL),
    R("DELETE", UPN, P.LLM_WRITE, "Delete an upstream", m.Deleted, L.delete_upstream, query=DQ, slashes=SL),
    R("GET", MG, P.LLM_READ, "Model groups in force", LM.ModelGroupList, L.list_model_groups),
    R("PUT", MGN, P.LLM_WRITE, "Add or replace a group", LM.ModelGroupOut, L.put_model_group, ModelGroup, slashes=SL),
    R("DELETE", MGN, P.LLM_WRITE, "Delete a model group", m.Deleted, L.delete_model_group, query=DQ, slashes=SL),
    R("GET", RULES, P.LLM_READ, "Routing rules in force", LM.RulesOut, L.get_rules),
    R("PUT", RULES, P.LLM_WRITE, "Replace the routing rules", LM.RulesOut, L.put_rules, LM.RulesIn),
    R("DELETE", RULES, P.LLM_WRITE, "Drop the stored routing rules", LM.RulesOut, L.delete_rules),
    R("POST", LLM + "/route", P.LLM_READ, "Dry run: a request's route", LM.RouteOut, L.explain_route, LM.RouteQuery),
    R("GET", LLM + "/status", P.LLM_READ, "This worker's configuration reload state", LM.StatusOut, L.get_status),
    R("GET", GUARD, P.GUARDRAILS_READ, "Global guardrail policy and built-in rules", g.GuardrailsOut, g.get_guardrails),
    R("PUT", GUARD, P.GUARDRAILS_WRITE, "Replace the global guardrail policy", g.GuardrailsOut, g.put_guardrails, GG),
    R("GET", TEAM_G, P.GUARDRAILS_READ, "A team's guardrail override", GO, g.get_team_guardrails),
    R("PUT", TEAM_G, P.GUARDRAILS_WRITE, "Replace a team's guardrail override", GO, g.put_team_guardrails, GD),
    R("GET", KEY_G, P.GUARDRAILS_READ, "A key's guardrail override", GO, g.get_key_guardrails),
    R("PUT", KEY_G, P.GUARDRAILS_WRITE, "Replace a key's guardrail override", GO, g.put_key_guardrails, GD),
    R("GET", SRV, P.MCP_READ, "MCP servers in force, with live status", MM.McpServerList, M.list_servers),
    R("POST", SRV, P.MCP_WRITE, "Add an MCP server", MSO, M.create_server, MM.McpServerIn, status=201),
    R("GET", SRVN, P.MCP_READ, "Get an MCP server", MSO, M.get_server),
    R("PUT", SRVN, P.MCP_WRITE, "Replace a stored MCP server", MSO, M.put_server, MM.McpServerIn),
    R("POST", SRVN + "/approve", P.MCP_WRITE, "Approve a server's tools", MM.McpApprovalOut, M.approve_server),
    R("DELETE", SRVN, P.MCP_WRITE, "Delete a stored MCP server", m.Deleted, M.delete_server),
    R("GET", MCP + "/tools/changed", P.MCP_READ, "Tools changed since approval", MM.McpChangedList, M.changed_tools),
    R("POST", POL, P.MCP_WRITE, "Set a team's tool policy", MM.McpPolicyOut, M.put_policy, TP),
    R("GET", POL, P.MCP_READ, "A team's tool policy", MM.McpPolicyOut, M.get_policy),
    R("DELETE", POL, P.MCP_WRITE, "Drop a team's tool policy", m.Deleted, M.delete_policy),
)
