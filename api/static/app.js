// The goal-mandala page: sign in, start a chart, follow its jobs live, draw the 9×9 grid, list past jobs.
// It calls only the documented API (docs/api.md). The event stream is read with fetch, because EventSource
// cannot send the Authorization header and a token in the URL would end up in logs and history.

const LANG = (navigator.languages && navigator.languages[0] || navigator.language || "en")
  .toLowerCase().startsWith("ja") ? "ja" : "en";

// Every text of the page, as [English, Japanese].
const TEXTS = {
  title: ["Goal mandala", "目標マンダラ"],
  signIn: ["Sign in", "サインイン"],
  userLabel: ["User id", "ユーザーID"],
  mint: ["Sign in with a development token", "開発用トークンでサインイン"],
  tokenLabel: ["Token (the output of mandala token)", "トークン（mandala token の出力）"],
  useToken: ["Use this token", "このトークンを使う"],
  signOut: ["Sign out", "サインアウト"],
  newGoal: ["New goal", "新しい目標"],
  goalTitle: ["Goal", "目標"],
  goalDescription: ["Description", "説明"],
  goalDeadline: ["Deadline", "達成期限"],
  goalBackground: ["Background", "背景"],
  goalConstraints: ["Constraints (optional)", "制約事項（任意）"],
  depth: ["Generate", "生成する範囲"],
  depth1: ["subgoals", "サブ目標"],
  depth2: ["subgoals and actions", "サブ目標とアクション"],
  depth3: ["the whole chart, with tasks", "タスクまでチャート全体"],
  start: ["Generate", "生成する"],
  progress: ["Progress", "進捗"],
  cancel: ["Cancel", "キャンセル"],
  retry: ["Retry", "リトライ"],
  chart: ["Mandala", "マンダラ"],
  history: ["Your jobs", "あなたのジョブ"],
  refresh: ["Refresh", "更新"],
  signedIn: ["Signed in as {sub}", "{sub} としてサインイン中"],
  noJobs: ["No jobs yet.", "ジョブはまだありません。"],
  completed: ["Completed.", "完了しました。"],
  units: ["{done}/{total} units", "{done}/{total} 単位"],
  elapsed: ["{s} s", "{s} 秒"],
  tasksOf: ["Tasks of “{title}”", "「{title}」のタスク"],
  noTasks: ["No tasks yet.", "タスクはまだありません。"],
  minutes: ["{n} min", "{n}分"],
  chartOf: ["Mandala of “{title}”", "「{title}」のマンダラ"],
  connection: ["Connection lost; retrying…", "接続が切れました。再接続しています…"],
  SUBGOAL_GENERATION: ["Subgoals", "サブ目標"],
  ACTION_GENERATION: ["Actions", "アクション"],
  TASK_GENERATION: ["Tasks", "タスク"],
};
const TERMINAL = new Set(["COMPLETED", "FAILED", "TIMEOUT", "CANCELLED"]);
const STAGES = ["SUBGOAL_GENERATION", "ACTION_GENERATION", "TASK_GENERATION"];
const SLOTS = [0, 1, 2, 3, 5, 6, 7, 8]; // position 0..7 → cell of a 3×3 block, reading order, centre skipped
const TOKEN_KEY = "mandala-token";

const $ = (id) => document.getElementById(id);
const t = (key, values = {}) =>
  TEXTS[key][LANG === "ja" ? 1 : 0].replace(/\{(\w+)\}/g, (_, k) => String(values[k]));

class ApiError extends Error {
  constructor(error) {
    super(`${error.message} (${error.code})`);
    this.code = error.code;
  }
}

let token = sessionStorage.getItem(TOKEN_KEY);
let current = null; // the job shown in the progress section
let goal = null; // the goal tree drawn in the chart
let elapsedTimer = null;

function headers(extra = {}) {
  return { "Authorization": `Bearer ${token}`, "Accept-Language": LANG, ...extra };
}

async function api(method, path, body) {
  const init = { method, headers: headers(body ? { "Content-Type": "application/json" } : {}) };
  if (body) init.body = JSON.stringify(body);
  const response = await fetch(path, init);
  const json = await response.json();
  if (!json.success) throw new ApiError(json.error);
  return json.data;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Every event of a job after `after`, up to the terminal one; a dropped stream is reopened with Last-Event-ID.
async function follow(processId, onEvent) {
  let last = 0;
  let delay = 2000;
  for (;;) {
    try {
      const response = await fetch(`/api/ai/async/events/${processId}`, {
        headers: headers({ "Accept": "text/event-stream", "Last-Event-ID": String(last) }),
      });
      if (!response.ok) throw new ApiError((await response.json()).error);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, end).split("\n");
          buffer = buffer.slice(end + 2);
          const retry = frame.find((line) => line.startsWith("retry:"));
          if (retry) delay = Number(retry.slice(6)) || delay;
          const data = frame.filter((line) => line.startsWith("data:")).map((line) => line.slice(5).trim()).join("\n");
          if (!data) continue;
          const event = JSON.parse(data);
          last = event.seq;
          $("job-message").textContent = "";
          await onEvent(event);
          if (TERMINAL.has(event.status)) return event;
        }
      }
    } catch (error) {
      if (error instanceof ApiError) throw error;
      $("job-message").textContent = t("connection");
    }
    await sleep(delay);
  }
}

// ------------------------------------------------------------------------------------------- sign-in

function showSignedIn(sub) {
  $("sign-in").hidden = true;
  $("app").hidden = false;
  $("who").hidden = false;
  $("who-text").textContent = t("signedIn", { sub });
}

function subjectOf(jwt) {
  try {
    const payload = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload)).sub || "?";
  } catch {
    return "?";
  }
}

async function signIn(newToken) {
  token = newToken.trim().replace(/^Bearer\s+/i, "");
  try {
    await refreshHistory();
  } catch (error) {
    token = null;
    $("sign-in-error").textContent = error.message;
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("sign-in-error").textContent = "";
  showSignedIn(subjectOf(token));
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  location.reload();
}

// ---------------------------------------------------------------------------------------------- jobs

function setJob(job) {
  current = job;
  $("job-section").hidden = false;
  $("job-type").textContent = t(job.type);
  updateJob({ status: job.status, progress: job.progress || 0 });
  clearInterval(elapsedTimer);
  const started = Date.parse(job.createdAt);
  const tick = () => { $("job-elapsed").textContent = t("elapsed", { s: Math.round((Date.now() - started) / 1000) }); };
  tick();
  elapsedTimer = setInterval(tick, 1000);
}

function updateJob({ status, progress }) {
  const badge = $("job-status");
  badge.textContent = status;
  badge.className = `badge ${status}`;
  $("job-progress").value = progress;
  $("job-units").textContent = t("units", { done: current.done, total: current.total });
  $("cancel").hidden = TERMINAL.has(status);
  $("retry").hidden = !(status === "FAILED" || status === "TIMEOUT");
}

// Follow one job to its end, redrawing the chart as units are saved; resolves with its final status body.
async function watch(job) {
  job.done = 0;
  job.total = job.totalUnits || (job.units && job.units.total) || 1;
  setJob(job);
  $("job-message").textContent = "";
  const goalScope = job.targetType === "GOAL" && job.type !== "SUBGOAL_GENERATION";
  await follow(job.processId, async (event) => {
    if (event.type === "UNIT_SUCCEEDED" || event.type === "UNIT_FAILED") job.done += 1;
    updateJob(event);
    if (goalScope && event.type === "UNIT_SUCCEEDED") await loadChart(job.targetId);
  });
  clearInterval(elapsedTimer);
  const final = await api("GET", `/api/ai/async/status/${job.processId}`);
  $("job-message").textContent = final.error ? `${final.error.message} (${final.error.code})` : t("completed");
  if (final.status === "COMPLETED" && final.targetType === "GOAL") await loadChart(final.targetId);
  await refreshHistory();
  return final;
}

async function runChart(params, depth) {
  let body = params;
  for (const type of STAGES.slice(0, depth)) {
    const final = await watch(await api("POST", "/api/ai/async/generate", { type, params: body }));
    if (final.status !== "COMPLETED") return;
    body = { goalId: final.targetId };
  }
}

function formParams(form) {
  const data = new FormData(form);
  const params = {
    title: data.get("title"),
    description: data.get("description"),
    deadline: new Date(`${data.get("deadline")}T23:59:59`).toISOString(),
    background: data.get("background"),
  };
  if (data.get("constraints").trim()) params.constraints = data.get("constraints");
  return params;
}

async function guarded(errorId, action) {
  $(errorId).textContent = "";
  try {
    await action();
  } catch (error) {
    $(errorId).textContent = error.message;
  }
}

// --------------------------------------------------------------------------------------------- chart

async function loadChart(goalId) {
  goal = (await api("GET", `/api/goals/${goalId}`)).goal;
  drawChart();
}

function cellsOf(tree) {
  const grid = Array.from({ length: 9 }, () => Array(9).fill(null));
  const put = (block, slot, cell) => { grid[Math.floor(block / 3) * 3 + Math.floor(slot / 3)][(block % 3) * 3 + (slot % 3)] = cell; };
  put(4, 4, { kind: "goal", title: tree.title });
  for (const sub of tree.subGoals) {
    const block = SLOTS[sub.position];
    put(4, block, { kind: "subgoal", title: sub.title });
    put(block, 4, { kind: "subgoal", title: sub.title });
    for (const action of sub.actions) put(block, SLOTS[action.position], { kind: "action", title: action.title, action });
  }
  return grid;
}

function drawChart() {
  $("chart-section").hidden = false;
  $("chart-caption").textContent = t("chartOf", { title: goal.title });
  $("chart").dataset.goalId = goal.id;
  const rows = cellsOf(goal).map((cells) => {
    const tr = document.createElement("tr");
    for (const cell of cells) {
      const td = document.createElement("td");
      if (cell) {
        td.className = cell.kind;
        const title = document.createElement("span");
        title.className = "title";
        title.textContent = cell.title;
        if (cell.action) {
          const button = document.createElement("button");
          button.type = "button";
          button.append(title);
          if (cell.action.tasks.length) {
            const count = document.createElement("span");
            count.className = "count";
            count.textContent = `(${cell.action.tasks.length})`;
            button.append(count);
          }
          button.addEventListener("click", () => showTasks(cell.action));
          td.append(button);
        } else {
          td.append(title);
        }
      }
      tr.append(td);
    }
    return tr;
  });
  $("chart").tBodies[0].replaceChildren(...rows);
}

function showTasks(action) {
  const heading = document.createElement("h3");
  heading.textContent = t("tasksOf", { title: action.title });
  const list = document.createElement("ol");
  for (const task of action.tasks) {
    const item = document.createElement("li");
    item.textContent = `${task.title} (${t("minutes", { n: task.estimatedMinutes })}, ${task.priority})`;
    list.append(item);
  }
  const empty = document.createElement("p");
  empty.textContent = t("noTasks");
  $("tasks").replaceChildren(heading, action.tasks.length ? list : empty);
}

// ------------------------------------------------------------------------------------------- history

async function refreshHistory() {
  const { processes } = await api("GET", "/api/ai/async/history?pageSize=20");
  const items = processes.map((job) => {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    const badge = document.createElement("span");
    badge.className = `badge ${job.status}`;
    badge.textContent = job.status;
    const label = document.createElement("span");
    label.textContent = `${t(job.type)} · ${job.progress}% · ${new Date(job.createdAt).toLocaleString(LANG)}`;
    button.append(badge, label);
    button.addEventListener("click", () => guarded("form-error", () => openJob(job.processId)));
    item.append(button);
    return item;
  });
  if (!items.length) {
    const empty = document.createElement("li");
    empty.textContent = t("noJobs");
    items.push(empty);
  }
  $("history").replaceChildren(...items);
}

async function openJob(processId) {
  const job = await api("GET", `/api/ai/async/status/${processId}`);
  const chartReady = job.targetType === "GOAL" && (job.type !== "SUBGOAL_GENERATION" || job.status === "COMPLETED");
  if (chartReady) await loadChart(job.targetId);
  if (!TERMINAL.has(job.status)) {
    await watch(job);
    return;
  }
  job.done = job.units.succeeded + job.units.failed;
  job.total = job.units.total;
  setJob(job);
  clearInterval(elapsedTimer);
  $("job-message").textContent = job.error ? `${job.error.message} (${job.error.code})` : t("completed");
}

// ------------------------------------------------------------------------------------------- wiring

function wire() {
  document.documentElement.lang = LANG;
  for (const element of document.querySelectorAll("[data-i18n]")) element.textContent = t(element.dataset.i18n);
  document.title = t("title");
  $("mint-form").hidden = document.body.dataset.devTokens !== "on";
  $("mint-form").addEventListener("submit", (event) => {
    event.preventDefault();
    guarded("sign-in-error", async () => {
      token = null;
      const response = await fetch("/api/dev/token", {
        method: "POST",
        headers: { "Content-Type": "application/json", "Accept-Language": LANG },
        body: JSON.stringify({ sub: $("subject").value }),
      });
      const json = await response.json();
      if (!json.success) throw new ApiError(json.error);
      await signIn(json.data.token);
    });
  });
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    signIn($("token").value);
  });
  $("sign-out").addEventListener("click", signOut);
  $("goal-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target;
    const depth = Number(new FormData(form).get("depth"));
    $("start").disabled = true;
    guarded("form-error", () => runChart(formParams(form), depth)).finally(() => { $("start").disabled = false; });
  });
  $("cancel").addEventListener("click", () => guarded("form-error", () => api("POST", `/api/ai/async/cancel/${current.processId}`, {})));
  $("retry").addEventListener("click", () => guarded("form-error", async () => {
    await watch(await api("POST", `/api/ai/async/retry/${current.processId}`, {}));
  }));
  $("refresh").addEventListener("click", () => guarded("form-error", refreshHistory));
  if (token) signIn(token);
}

wire();
