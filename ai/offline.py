"""The ``offline`` provider (spec 3.2): deterministic, goal-specific Japanese output with no network.

How it knows what to write: ``request.context.type`` says which list to produce, and the titles come
back out of the user message's labelled data sections with ``ai.prompts.read_section`` (goal title for
subgoals; subgoal title for actions; action title and ``アクション種別`` for tasks). A message without
those sections still gets valid output, with generic excerpts.

Seed: SHA-256 of the processing type, the unit (target) id and the user message, which is built from
normalised text; choices are drawn from further SHA-256 digests, so the output does not depend on the
``random`` module's algorithm. The system message is not part of the seed: it holds only our
instructions and regeneration feedback.

Faults (``faults_enabled``): ``#fault:<stage>:<kind>[:<n>|:job<n>]`` in the goal title, or in the title
of the subgoal (ACTION) or action (TASK) being processed. ``n`` (default 1) counts Temporal attempts for
the failing kinds and outputs within an attempt for ``invalid_json`` / ``bad_quality``; ``job<n>`` counts
jobs of a retry chain instead (the original is job 1), so ``job1`` fails the first job every time and
lets its manual retry succeed. The first directive whose stage matches and that is still active
applies. Directives are removed before any title is excerpted, so output never holds one.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from ai.prompts import DataTag, read_section
from ai.provider import AIRequest, AIResponse, ProviderError, ProviderErrorKind
from domain.enums import ActionType, ProcessingType

PROVIDER_NAME = "offline"
MODEL_NAME = "offline-v1"
EXCERPT_LENGTH = 10

_STAGES = {
    ProcessingType.SUBGOAL_GENERATION: "subgoal",
    ProcessingType.ACTION_GENERATION: "action",
    ProcessingType.TASK_GENERATION: "task",
}
_ATTEMPT_FAULTS = frozenset({"throttle", "server_error", "rejected", "hang"})
_DIRECTIVE = re.compile(
    r"#fault:(subgoal|action|task|any):(throttle|server_error|rejected|hang|invalid_json|bad_quality)"
    r"(?::(job)?(\d+))?"
)
_DIRECTIVE_TEXT = re.compile(r"#fault:[A-Za-z0-9_:]*")
_EXCERPT_END = re.compile(r"[（(【「\[]")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Fault:
    stage: str
    kind: str
    limit: int
    per_job: bool  # `job<n>`: counts jobs of the retry chain, not attempts or outputs

    def active(self, request: AIRequest) -> bool:
        context = request.context
        if self.stage not in ("any", _STAGES[context.type]):
            return False
        if self.per_job:
            counter = context.retry_count + 1
        else:
            counter = context.attempt if self.kind in _ATTEMPT_FAULTS else context.generation
        return counter <= self.limit


class _Dice:
    """Deterministic draws: the n-th draw is SHA-256(seed || n)."""

    def __init__(self, seed: bytes) -> None:
        self._seed = seed
        self._draws = 0

    def below(self, bound: int) -> int:
        self._draws += 1
        digest = hashlib.sha256(self._seed + self._draws.to_bytes(8, "big")).digest()
        return int.from_bytes(digest[:8], "big") % bound

    def pick(self, options: Sequence[T]) -> T:
        return options[self.below(len(options))]

    def shuffled(self, options: Sequence[T]) -> list[T]:
        out = list(options)
        for i in range(len(out) - 1, 0, -1):
            j = self.below(i + 1)
            out[i], out[j] = out[j], out[i]
        return out

    def ordered_sample(self, options: Sequence[T], count: int) -> list[T]:
        chosen = sorted(self.shuffled(range(len(options)))[:count])
        return [options[i] for i in chosen]


def excerpt(title: str | None, fallback: str) -> str:
    """At most 10 code points from the head of a title, stopping at an opening bracket; no directive."""
    text = " ".join(_DIRECTIVE_TEXT.sub(" ", title or "").split())
    head = _EXCERPT_END.split(text, maxsplit=1)[0].strip() or text
    return head[:EXCERPT_LENGTH].strip() or fallback


# Subgoal themes: (title variants, description variants, background). {g} = goal excerpt.
_THEMES: tuple[tuple[tuple[str, ...], tuple[str, ...], str], ...] = (
    (
        ("基礎知識の体系的な習得", "必要な知識の整理と習得"),
        (
            "「{g}」に必要な基礎知識を体系的に学びます。入門書を1冊読み終え、重要な用語と仕組みを自分の言葉で"
            "説明できる状態を目指し、理解の度合いを月に1回の小テストで測ります。",
            "「{g}」の土台となる知識を身につけます。信頼できる教材を3つ選んで学ぶ順番を決め、章ごとの要点を"
            "ノートにまとめ、学んだ範囲を月末に振り返って抜けている部分を補います。",
        ),
        "土台となる知識が不足したままだと、実践の質と速さが頭打ちになるためです。",
    ),
    (
        ("実践演習の積み重ね", "実践経験の拡大"),
        (
            "「{g}」に関わる課題に実際に取り組み、手を動かす経験を増やします。週に2回以上の演習時間を確保し、"
            "期限までに合計30件の課題をやり遂げて、できることを着実に広げます。",
            "学んだ内容を「{g}」の場面で使う機会を作ります。小さな課題から始めて難易度を段階的に上げ、"
            "毎月5件以上の実践結果を記録して、うまくいかなかった点を次の演習に反映します。",
        ),
        "知識は実際に使うことで定着し、応用できる力に変わるからです。",
    ),
    (
        ("毎日の取り組み習慣の定着", "続けられる習慣づくり"),
        (
            "「{g}」に向けた取り組みを毎日の生活に組み込みます。毎朝30分の時間を固定し、実施した日を"
            "カレンダーに記録して、3か月間で実施率80%以上を保つことを目指します。",
            "「{g}」のための行動を無理なく続けられる仕組みを作ります。始める時刻ときっかけを決め、"
            "週ごとの実施回数を数えて、4週続けて週5回以上を達成します。",
        ),
        "大きな成果は短期間の集中よりも、日々の小さな積み重ねから生まれるためです。",
    ),
    (
        ("集中できる環境の整備", "道具と作業場所の最適化"),
        (
            "「{g}」に集中できる環境を整えます。作業場所から気が散るものを取り除き、必要な道具と資料を"
            "すぐに使える位置に置いて、1回あたりの準備時間を5分以内に減らします。",
            "「{g}」の取り組みに使う道具と場所を見直します。使っていない物を片付け、デジタルの資料を"
            "1か所に集約し、作業を始めるまでの手間を半分にすることを目指します。",
        ),
        "環境が整っていないと、始めるまでに時間と気力を消耗してしまうためです。",
    ),
    (
        ("相談できる仲間と支援者づくり", "人とのつながりの活用"),
        (
            "「{g}」について相談できる相手を増やします。同じ目標を持つ仲間が集まる場に月1回以上参加し、"
            "助言をもらえる経験者を2人見つけて、定期的に意見をもらえる関係を築きます。",
            "周囲の人の力を借りて「{g}」を前に進めます。取り組みを身近な人に宣言し、進め方について"
            "経験者に質問する機会を月2回作り、得た助言を計画に取り入れます。",
        ),
        "一人で進めると視野が狭くなり、行き詰まったときに抜け出しにくいためです。",
    ),
    (
        ("心身のコンディション管理", "体調と集中力の維持"),
        (
            "「{g}」に取り組む体力と集中力を保ちます。睡眠時間を毎日7時間確保し、週3回の軽い運動を行い、"
            "疲れを感じた日は作業量を調整して、体調を崩さずに期限まで走り切ります。",
            "心と体の状態を整えて「{g}」への取り組みの質を保ちます。1日の終わりに体調と気分を5段階で"
            "記録し、低い日が続いたら休養を優先する決まりを作って実行します。",
        ),
        "体調や気力が落ちると、どれほど良い計画でも実行できなくなるためです。",
    ),
    (
        ("進捗の数値化と振り返り", "進み具合の記録と改善"),
        (
            "「{g}」の進み具合を数字で把握できるようにします。取り組んだ時間と完了した課題の数を記録し、"
            "月末に目標との差を確かめて、翌月の計画を具体的に修正します。",
            "「{g}」までの道のりを測る指標を3つ決めて記録します。週に1回グラフで推移を見て、"
            "遅れている項目には原因と対策を書き出し、次の週の行動に落とし込みます。",
        ),
        "進み具合が見えないと、遅れに気づくのが遅くなり挽回が難しくなるためです。",
    ),
    (
        ("成果の発信と共有", "学びのアウトプット"),
        (
            "「{g}」で得た学びや成果を外に向けて発信します。月に2本の記事やメモを公開し、期限までに"
            "人前で1回発表して、受け取った反応を次の取り組みに生かします。",
            "「{g}」の取り組みから得た知見を形に残して共有します。学んだことを短い文章にまとめて"
            "公開し、仲間からの質問や意見をもとに内容を磨き上げます。",
        ),
        "人に伝えることで理解が深まり、協力者や新しい機会も集まりやすくなるためです。",
    ),
)

# Actions: (title, description, background). {s} = subgoal excerpt, {g} = goal excerpt.
_EXECUTION_ACTIONS: tuple[tuple[str, str, str], ...] = (
    (
        "学習計画書を作成する",
        "「{s}」を進めるための計画書を作成します。期限から逆算して月ごとの到達点と使う教材を一覧にし、"
        "1ページの計画書として完成させます。完成した計画書は「{g}」の取り組み全体の道しるべとして使い、"
        "大きな変更があったときに書き直します。",
        "進む方向と順番を先に決めておくと、迷う時間を減らせるためです。",
    ),
    (
        "教材と資料のリストを作成する",
        "「{s}」に役立つ書籍、講座、記事を調べて、目的別に分類したリストを作成します。各資料に"
        "難易度と所要時間を書き添え、最初に使う3つを選びます。リストは「{g}」に向けた学習の入口として、"
        "誰かに紹介できる形に整えます。迷ったときはこのリストに戻ります。",
        "良い教材を最初に選んでおくと、学ぶ効率が大きく変わるためです。",
    ),
    (
        "練習用の小さな成果物を完成させる",
        "「{s}」の力を試すために、半日から1日で仕上がる小さな成果物を一つ作り上げます。作る前に"
        "完成の条件を3つ書き出し、すべて満たした時点で完成とします。出来上がった物は「{g}」の"
        "進み具合を示す記録として保存します。完成までにかかった時間も記録します。",
        "小さく作り切る経験が、大きな成果物に取り組む自信になるためです。",
    ),
    (
        "取り組みの成果を発表する",
        "「{s}」でこれまでに得た成果を、勉強会や社内の場で10分程度の発表にまとめて披露します。"
        "スライドを作成し、聞き手からの質問を記録して改善点を洗い出します。発表の経験は「{g}」を"
        "人に説明する力にもつながります。発表の日付は先に決めて告知します。",
        "人前で説明すると、自分の理解の抜けや弱い部分がはっきりするためです。",
    ),
    (
        "作業手順書を作成して公開する",
        "「{s}」で何度も行う作業の手順を、初めての人でも再現できる手順書として書き上げます。"
        "画面や道具の写真を添えて読みやすくし、仲間に公開して意見をもらいます。手順書は「{g}」に"
        "取り組む時間を短くする財産になります。公開後も気づいた点を追記します。",
        "手順を言葉にすると、無駄な工程や抜けている工程に気づけるためです。",
    ),
    (
        "中間レビューの資料を作成する",
        "「{s}」の中間地点で、達成できたことと残っている課題を一枚の資料にまとめます。数字で示せる"
        "成果を並べ、遅れている項目には対策を書き添えます。資料をもとに「{g}」の計画を見直し、"
        "後半の優先順位を決めます。資料は関係者にも共有します。",
        "途中で立ち止まって全体を見ることで、後半の進め方を誤らずに済むためです。",
    ),
    (
        "課題一覧と解決策の表を作成する",
        "「{s}」を進めるうえで障害になっている課題をすべて書き出し、影響の大きさと解決の難しさで"
        "整理した表を作ります。上位の課題には具体的な解決策と期限を記入し、「{g}」の達成を妨げる"
        "要因を一つずつ取り除きます。表は月に一度更新します。",
        "課題を見える形にすると、手を付ける順番を冷静に決められるためです。",
    ),
)
_HABIT_ACTIONS: tuple[tuple[str, str, str], ...] = (
    (
        "毎日30分の練習を続ける",
        "「{s}」のために毎日30分の練習時間を確保して続けます。始める時刻を固定し、取り組んだ内容を"
        "一行で記録します。忙しい日は10分だけでも行い、途切れさせないことを優先して「{g}」に向けた"
        "力を少しずつ積み上げます。続いた日数も数えて励みにします。",
        "短い時間でも毎日続けることで、技能が確実に身につくためです。",
    ),
    (
        "毎週の振り返りを習慣にする",
        "毎週末に15分、「{s}」の1週間の取り組みを振り返る時間を設けます。うまくいったこと、"
        "うまくいかなかったこと、次の週に試すことを三つの欄に書き、習慣として続けることで"
        "「{g}」への道筋を定期的に整えます。書いた内容は次の週の最初に読み返します。",
        "振り返りの習慣が、同じ失敗を繰り返さないための仕組みになるためです。",
    ),
    (
        "日々の学びを記録する",
        "「{s}」に関して気づいたことや学んだことを、日々短いメモに残します。1日3行を目安にし、"
        "週末に読み返して大事な点に印を付けます。記録を続けることで、「{g}」に向けた成長の跡が"
        "目に見えるようになります。気づきの多い日は写真も添えます。",
        "記録を残すと学びが定着し、後から見返して活用できるためです。",
    ),
    (
        "朝の準備ルーティンを続ける",
        "毎朝、「{s}」に取り組む前の5分間で、その日にやることを一つ決めて書き出すルーティンを"
        "続けます。前日の続きから始められるように準備し、「{g}」のための時間を迷わず使い始められる"
        "状態を作ります。前の晩に道具を出しておくと、さらに始めやすくなります。",
        "始める前の小さな準備が、集中して取り組む時間を増やすためです。",
    ),
    (
        "仲間との進捗共有を定期的に行う",
        "「{s}」の進み具合を、仲間や相談相手と定期的に共有します。毎週決まった曜日に短い報告を"
        "送り、相手の取り組みにも一言返します。互いに見守る関係を続けることで、「{g}」への意欲を"
        "保ちやすくなります。報告は三行以内にまとめて負担を軽くします。",
        "人に見てもらう仕組みがあると、気持ちが落ちたときも続けやすいためです。",
    ),
)

# Tasks: (title, description, priority). {a} = action excerpt. Step order is kept when sampling.
_EXECUTION_TASKS: tuple[tuple[str, str, str], ...] = (
    (
        "必要な資料と道具を揃える",
        "「{a}」を始める前に、必要な資料、道具、アカウントを一覧にして揃えます。足りないものは"
        "この段階で手配し、作業を途中で止めずに進められる状態を整えます。",
        "HIGH",
    ),
    (
        "作業の手順と完成条件を書き出す",
        "「{a}」を終えるまでの手順を5つ程度に分けて書き出し、それぞれの完成条件を一文で決めます。"
        "どこまでやれば終わりかを先に決めて、作業の迷いを減らします。",
        "HIGH",
    ),
    (
        "最初の版を作る",
        "書き出した手順に沿って「{a}」の最初の版を作ります。細部の出来にはこだわらず、全体を"
        "一通り形にすることを優先して、時間内に区切りをつけます。",
        "MEDIUM",
    ),
    (
        "足りない部分を補って仕上げる",
        "最初の版を完成条件と照らし合わせ、「{a}」の足りない部分を補います。優先度の高い部分から"
        "手を入れ、決めた時間内で仕上がった状態にします。",
        "MEDIUM",
    ),
    (
        "第三者の意見をもらって直す",
        "仕上げた「{a}」を仲間や経験者に見てもらい、気になる点を三つ挙げてもらいます。"
        "指摘のうち効果の大きいものから順に直して、完成度を高めます。",
        "MEDIUM",
    ),
    (
        "成果と気づきを記録に残す",
        "「{a}」で作った物と、作業中に気づいたことを短い記録にまとめて保存します。"
        "次に似た作業をするときに役立つよう、うまくいった工夫を書き添えます。",
        "LOW",
    ),
)
_HABIT_TASKS: tuple[tuple[str, str, str], ...] = (
    (
        "実施する時間帯を決めて予定に入れる",
        "「{a}」に取り組む曜日と時間帯を決め、カレンダーに繰り返しの予定として登録します。"
        "他の予定と重なりにくい時間を選び、始めるきっかけとなる行動も決めておきます。",
        "HIGH",
    ),
    (
        "決めた時間に取り組みを行う",
        "予定した時間になったら「{a}」に取り組みます。気分が乗らない日も最初の5分だけは手を付け、"
        "その日の分を終えたら完了の印を付けます。",
        "MEDIUM",
    ),
    (
        "実施記録をつける",
        "「{a}」に取り組んだ日付、時間、内容を記録表に書き込みます。できなかった日はその理由も"
        "一言残し、続けにくい原因を後から探せるようにします。",
        "MEDIUM",
    ),
    (
        "1週間分の記録を振り返る",
        "週末に「{a}」の1週間分の記録を読み返し、実施できた回数と続けにくかった場面を書き出します。"
        "翌週に試す工夫を一つ決めて、予定に反映します。",
        "LOW",
    ),
)
_ESTIMATES = (30, 45, 60)
_TASK_COUNTS = {ActionType.EXECUTION: (3, 4, 5), ActionType.HABIT: (1, 2, 3)}
_INVALID_JSON_TEXT = "申し訳ありませんが、ご依頼の内容を処理できませんでした。"
_OVERLONG_SUFFIX = "（この作業の目的と手順と注意点を詳しく書いたとても長いタイトルです）" * 2


class OfflineProvider:
    def __init__(self, *, latency_ms: int = 0, faults_enabled: bool = False) -> None:
        self._latency_ms = latency_ms
        self._faults_enabled = faults_enabled

    @property
    def name(self) -> str:
        return PROVIDER_NAME

    async def aclose(self) -> None:
        """Nothing to release: the offline provider holds no connections."""

    async def generate(self, request: AIRequest) -> AIResponse:
        started = time.monotonic()
        if self._latency_ms > 0:
            await asyncio.sleep(self._latency_ms / 1000)
        fault = self._active_fault(request)
        kind = fault.kind if fault is not None else ""
        if kind in _ATTEMPT_FAULTS:
            await _raise_fault(kind)
        text = (
            _INVALID_JSON_TEXT
            if kind == "invalid_json"
            else _render(request, bad_quality=kind == "bad_quality")
        )
        return AIResponse(
            text=text,
            input_tokens=_tokens(request.system + request.user),
            output_tokens=_tokens(text),
            provider=PROVIDER_NAME,
            model=MODEL_NAME,
            finish_reason="stop",
            latency_ms=int((time.monotonic() - started) * 1000),
        )

    def _active_fault(self, request: AIRequest) -> _Fault | None:
        if not self._faults_enabled:
            return None
        for title in _processed_titles(request):
            for stage, kind, per_job, limit in _DIRECTIVE.findall(title):
                fault = _Fault(stage, kind, int(limit) if limit else 1, per_job=bool(per_job))
                if fault.active(request):
                    return fault
        return None


def _processed_titles(request: AIRequest) -> list[str]:
    tags = [DataTag.GOAL_TITLE]
    if request.context.type is ProcessingType.ACTION_GENERATION:
        tags.append(DataTag.SUBGOAL_TITLE)
    elif request.context.type is ProcessingType.TASK_GENERATION:
        tags.append(DataTag.ACTION_TITLE)
    return [title for tag in tags if (title := read_section(request.user, tag)) is not None]


async def _raise_fault(kind: str) -> NoReturn:
    if kind == "hang":
        await asyncio.Event().wait()
    if kind == "rejected":
        raise ProviderError(ProviderErrorKind.REJECTED, "offline fault: rejected")
    retry_after = 1.0 if kind == "throttle" else None
    raise ProviderError(ProviderErrorKind.TRANSIENT, f"offline fault: {kind}", retry_after=retry_after)


def _tokens(text: str) -> int:
    return math.ceil(len(text) / 2)


def _render(request: AIRequest, *, bad_quality: bool) -> str:
    seed = "\x1f".join((request.context.type.value, str(request.context.unit_id), request.user))
    dice = _Dice(hashlib.sha256(seed.encode()).digest())
    goal = excerpt(read_section(request.user, DataTag.GOAL_TITLE), "目標")
    document: dict[str, Any]
    if request.context.type is ProcessingType.SUBGOAL_GENERATION:
        subgoals = _subgoals(dice, goal)
        document = {"subGoals": subgoals[:-1] if bad_quality else subgoals}
    elif request.context.type is ProcessingType.ACTION_GENERATION:
        subgoal = excerpt(read_section(request.user, DataTag.SUBGOAL_TITLE), "サブ目標")
        actions = _actions(dice, goal, subgoal)
        document = {"actions": actions[:-1] if bad_quality else actions}
    else:
        action = excerpt(read_section(request.user, DataTag.ACTION_TITLE), "アクション")
        habit = read_section(request.user, DataTag.ACTION_TYPE) == ActionType.HABIT.value
        tasks = _tasks(dice, action, ActionType.HABIT if habit else ActionType.EXECUTION)
        if bad_quality:
            tasks = [{**task, "title": task["title"] + _OVERLONG_SUFFIX} for task in tasks]
        document = {"tasks": tasks}
    return json.dumps(document, ensure_ascii=False)


def _subgoals(dice: _Dice, goal: str) -> list[dict[str, Any]]:
    out = []
    for titles, descriptions, background in dice.shuffled(_THEMES):
        out.append(
            {
                "title": f"{dice.pick(titles)}（{goal}）",
                "description": dice.pick(descriptions).format(g=goal),
                "background": background,
            }
        )
    return out


def _actions(dice: _Dice, goal: str, subgoal: str) -> list[dict[str, Any]]:
    chosen = [(entry, "execution") for entry in dice.shuffled(_EXECUTION_ACTIONS)[:5]]
    chosen += [(entry, "habit") for entry in dice.shuffled(_HABIT_ACTIONS)[:3]]
    return [
        {
            "title": f"{title}（{subgoal}）",
            "description": description.format(s=subgoal, g=goal),
            "background": background,
            "type": action_type,
        }
        for (title, description, background), action_type in chosen
    ]


def _tasks(dice: _Dice, action: str, action_type: ActionType) -> list[dict[str, Any]]:
    pool = _HABIT_TASKS if action_type is ActionType.HABIT else _EXECUTION_TASKS
    steps = dice.ordered_sample(pool, dice.pick(_TASK_COUNTS[action_type]))
    return [
        {
            "title": f"{title}（{action}）",
            "description": description.format(a=action),
            "estimatedMinutes": dice.pick(_ESTIMATES),
            "priority": priority,
            "dependencies": [index - 1] if index > 0 and action_type is ActionType.EXECUTION else [],
        }
        for index, (title, description, priority) in enumerate(steps)
    ]
