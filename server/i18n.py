"""The one translation catalogue: every text a user reads (pages, API error messages), in
Vietnamese (the default) and English. Keys are stable identifiers used in code and templates."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from flask import current_app, g, has_request_context, request, session

from schedules.describe import TEXTS as _RULE_TEXTS

LANGUAGES = ("vi", "en")

CATALOGUE: dict[str, dict[str, str]] = {
    # errors (API and pages)
    "err.unauthorized": {"vi": "Cần đăng nhập hoặc mã truy cập hợp lệ.",
                         "en": "A valid login or access token is required."},
    "err.bad_credentials": {"vi": "Sai tên đăng nhập hoặc mật khẩu.",
                            "en": "Wrong username or password."},
    "err.forbidden": {"vi": "Bạn không có quyền thực hiện thao tác này.",
                      "en": "You are not allowed to do this."},
    "err.forbidden_area": {"vi": "Bạn không có quyền với địa bàn {area}.",
                           "en": "You have no rights over area {area}."},
    "err.not_found": {"vi": "Không tìm thấy {what}.", "en": "{what} not found."},
    "err.not_json": {"vi": "Nội dung gửi lên phải là JSON (một đối tượng).",
                     "en": "The request body must be a JSON object."},
    "err.missing_field": {"vi": "Thiếu trường bắt buộc: {field}.",
                          "en": "Missing required field: {field}."},
    "err.invalid_field": {"vi": "Trường {field} không hợp lệ: {detail}.",
                          "en": "Invalid field {field}: {detail}."},
    "err.unknown_area": {"vi": "Không có địa bàn mã số {id}.", "en": "There is no area {id}."},
    "err.unknown_time_zone": {
        "vi": "Không có múi giờ {zone} (trường {field}); hãy dùng tên IANA, ví dụ "
              "Asia/Ho_Chi_Minh.",
        "en": "Unknown time zone {zone} (field {field}); use an IANA name such as "
              "Asia/Ho_Chi_Minh."},
    "err.unknown_node": {"vi": "Không có cụm loa/thiết bị {id}.", "en": "There is no node {id}."},
    "err.not_cluster": {"vi": "Địa bàn {id} không phải là cụm loa.",
                        "en": "Area {id} is not a cluster."},
    "err.duplicate": {"vi": "{what} đã tồn tại.", "en": "{what} already exists."},
    "err.bulletin_not_approved": {
        "vi": "Bản tin {id} chưa được duyệt (trạng thái: {status}); chỉ phát bản tin đã duyệt.",
        "en": "Bulletin {id} is not approved (status: {status}); only approved bulletins can be "
              "broadcast."},
    "err.programme_not_approved": {
        "vi": "Chương trình {id} có bản tin không còn được duyệt ({reason}); hãy sửa chương "
              "trình trước khi phát.",
        "en": "Programme {id} holds a bulletin that is no longer approved ({reason}); edit the "
              "programme before broadcasting it."},
    "err.programme_media_missing": {
        "vi": "Không tìm thấy tệp âm thanh đã duyệt của bản tin {id}.",
        "en": "The approved audio of bulletin {id} is missing."},
    "err.programme_render": {"vi": "Không ghép được âm thanh của chương trình: {detail}",
                             "en": "The programme's audio could not be joined: {detail}"},
    "err.bad_transition": {"vi": "Không thể {action} bản tin ở trạng thái {status}.",
                           "en": "Cannot {action} a bulletin that is {status}."},
    "err.no_targets": {"vi": "Chưa chọn địa bàn hoặc thiết bị nhận.",
                       "en": "No target areas or nodes given."},
    "err.no_nodes": {"vi": "Địa bàn được chọn chưa có thiết bị nào.",
                     "en": "The chosen targets hold no nodes."},
    "err.schedule_conflict": {
        "vi": "Lịch phát trùng giờ với {count} lượt phát khác trên cùng thiết bị; chọn mức ưu "
              "tiên cao hơn hoặc gửi \"override\": true để vẫn phát.",
        "en": "The schedule overlaps {count} other slots on the same nodes; give it a higher "
              "priority or send \"override\": true to allow the overlap."},
    "err.programme_conflict": {
        "vi": "Chương trình dài hơn làm lịch phát của nó trùng giờ với {count} lượt phát khác "
              "trên cùng thiết bị; gửi \"override\": true để vẫn lưu.",
        "en": "The longer programme makes its schedule overlap {count} other slots on the same "
              "nodes; send \"override\": true to save it anyway."},
    # a broadcast's recurrence refused, one entry per schedules.recurrence.RecurrenceErrorCode
    "err.recurrence.empty": {"vi": "Lịch lặp (recurrence) đang trống.",
                             "en": "The recurrence rule is empty."},
    "err.recurrence.unparsable": {
        "vi": "Lịch lặp không đọc được: cần dạng TÊN=GIÁ_TRỊ;TÊN=GIÁ_TRỊ (RRULE).",
        "en": "The recurrence rule cannot be read: it must be NAME=VALUE;NAME=VALUE (RRULE)."},
    "err.recurrence.unsupported_part": {
        "vi": "Lịch lặp có phần {part} không được hỗ trợ.",
        "en": "The recurrence rule's part {part} is not supported."},
    "err.recurrence.duplicate_part": {
        "vi": "Lịch lặp có phần {part} xuất hiện hai lần.",
        "en": "The recurrence rule gives {part} twice."},
    "err.recurrence.missing_freq": {
        "vi": "Lịch lặp thiếu FREQ (DAILY, WEEKLY, MONTHLY, YEARLY, HOURLY hoặc LUNARMONTHLY).",
        "en": "The recurrence rule lacks FREQ (DAILY, WEEKLY, MONTHLY, YEARLY, HOURLY or "
              "LUNARMONTHLY)."},
    "err.recurrence.invalid_value": {
        "vi": "Lịch lặp có giá trị {part} sai dạng hoặc ngoài phạm vi.",
        "en": "The recurrence rule's {part} is malformed or out of range."},
    "err.recurrence.too_frequent": {
        "vi": "Lịch lặp quá dày ({part}): nhiều nhất một lần mỗi phút.",
        "en": "The recurrence rule is too frequent ({part}): at most once a minute."},
    "err.recurrence.count_and_until": {
        "vi": "Lịch lặp không được có cả COUNT và UNTIL.",
        "en": "The recurrence rule may not have both COUNT and UNTIL."},
    "err.recurrence.never_occurs": {
        "vi": "Lịch lặp không có lần phát nào kể từ thời điểm bắt đầu (start_at).",
        "en": "The recurrence rule has no occurrence from its start (start_at) on."},
    "err.recurrence.too_many": {
        "vi": "Lịch lặp sinh quá nhiều lần phát.",
        "en": "The recurrence rule yields too many occurrences."},
    "err.recurrence.bad_timezone": {"vi": "Múi giờ của lịch lặp không hợp lệ.",
                                    "en": "The recurrence's time zone is not valid."},
    "err.recurrence.naive_datetime": {
        "vi": "Thời điểm của lịch lặp thiếu múi giờ.",
        "en": "A time of the recurrence lacks its time zone."},
    "err.speech_failed": {"vi": "Không tạo được giọng đọc: {detail}.",
                          "en": "Speech could not be made: {detail}."},
    "err.upload.empty": {"vi": "Tệp tải lên rỗng.", "en": "The uploaded file is empty."},
    "err.upload.too_large": {"vi": "Tệp quá lớn: {detail}.",
                             "en": "The file is too large: {detail}."},
    "err.upload.too_long": {"vi": "Bản ghi quá dài: {detail}.",
                            "en": "The recording is too long: {detail}."},
    "err.upload.not_audio": {"vi": "Tệp không phải là âm thanh: {detail}.",
                             "en": "The file is not audio: {detail}."},
    "err.upload.unsupported_format": {
        "vi": "Định dạng âm thanh không được hỗ trợ (nhận mp3, wav, m4a/aac, ogg/opus, flac): "
              "{detail}.",
        "en": "Unsupported audio format (mp3, wav, m4a/aac, ogg/opus, flac are accepted): "
              "{detail}."},
    "err.upload.corrupt": {"vi": "Tệp âm thanh bị hỏng: {detail}.",
                           "en": "The audio file is damaged: {detail}."},
    "err.upload.silent": {"vi": "Bản ghi chỉ có im lặng.", "en": "The recording is silent."},
    "err.not_a_series": {"vi": "Lượt phát này không phải lịch phát định kỳ.",
                         "en": "This broadcast is not a series."},
    "err.cannot_edit": {"vi": "Không thể sửa lịch phát ở trạng thái {status}.",
                        "en": "A series cannot be edited while {status}."},
    "err.not_an_occurrence": {"vi": "Lịch phát không có lượt nào bắt đầu lúc {at}.",
                              "en": "The series has no occurrence starting at {at}."},
    "err.cannot_cancel": {"vi": "Không thể huỷ lượt phát ở trạng thái {status}.",
                          "en": "Cannot cancel a broadcast that is {status}."},
    "err.emergency_forbidden": {
        "vi": "Chỉ lãnh đạo duyệt tin (hoặc theo quy định người thứ hai xác nhận của phường) mới "
              "được phát tin trực tiếp hoặc khẩn cấp.",
        "en": "Live and emergency broadcasts need the approver role (or the ward's second-person "
              "rule)."},
    "err.cannot_confirm": {"vi": "Không thể xác nhận lượt phát ở trạng thái {status}.",
                           "en": "Cannot confirm a broadcast that is {status}."},
    "err.second_person": {"vi": "Người xác nhận phải là người khác với người tạo lượt phát.",
                          "en": "The confirmation must come from someone other than its creator."},
    "err.stale_revision": {
        "vi": "Bản tin {id} đã được sửa sau khi bạn mở nó; hãy nghe lại bản mới rồi duyệt.",
        "en": "Bulletin {id} was edited after you opened it; listen to the new version, then "
              "approve."},
    "err.release.not_agent_wheel": {
        "vi": "Tệp không phải là gói phần mềm thiết bị loaphuong-agent (wheel): {detail}.",
        "en": "The file is not a loaphuong-agent wheel: {detail}."},
    "err.rollout.cannot_advance": {
        "vi": "Không thể chuyển sang giai đoạn sau: đợt cập nhật đang ở trạng thái {status} "
              "hoặc đã ở giai đoạn cuối.",
        "en": "Cannot start the next stage: the rollout is {status} or at its last stage."},
    "err.rollout.cannot_cancel": {
        "vi": "Không thể huỷ đợt cập nhật ở trạng thái {status}.",
        "en": "Cannot cancel a rollout that is {status}."},
    "err.server": {"vi": "Lỗi máy chủ; đã ghi nhật ký.", "en": "Server error; it was logged."},
    "err.method": {"vi": "Phương thức không được hỗ trợ.", "en": "Method not allowed."},
    "err.route": {"vi": "Không có đường dẫn này.", "en": "No such route."},
    "err.csrf": {"vi": "Yêu cầu không hợp lệ hoặc phiên làm việc đã hết hạn; hãy tải lại trang "
                       "rồi thử lại.",
                 "en": "The request was refused (missing or stale form token); reload the page "
                       "and try again."},
    "err.rate_limited": {"vi": "Đăng nhập sai quá nhiều lần; vui lòng đợi một phút rồi thử lại.",
                         "en": "Too many failed logins; wait a minute and try again."},
    "err.password_short": {"vi": "Mật khẩu phải có ít nhất {min} ký tự.",
                           "en": "The password must have at least {min} characters."},
    "err.grant_role": {"vi": "Bạn không thể cấp hoặc sửa tài khoản có vai trò {role}.",
                       "en": "You cannot grant or edit the role {role}."},
    "err.unscoped_user": {
        "vi": "Chỉ tài khoản không giới hạn địa bàn mới được tạo tài khoản không giới hạn địa bàn.",
        "en": "Only a user with every area may make a user with every area."},
    "err.last_admin": {"vi": "Không thể bỏ quyền hay khoá quản trị viên cuối cùng.",
                       "en": "The last active admin cannot be demoted or deactivated."},
    # things
    "thing.bulletin": {"vi": "bản tin", "en": "bulletin"},
    "thing.programme": {"vi": "chương trình", "en": "programme"},
    "thing.broadcast": {"vi": "lượt phát", "en": "broadcast"},
    "thing.area": {"vi": "địa bàn", "en": "area"},
    "thing.node": {"vi": "thiết bị", "en": "node"},
    "thing.media": {"vi": "tệp âm thanh", "en": "audio file"},
    "thing.command": {"vi": "lệnh", "en": "command"},
    "thing.alert": {"vi": "cảnh báo", "en": "alert"},
    "thing.lexicon": {"vi": "mục từ điển", "en": "lexicon entry"},
    "thing.release": {"vi": "bản phát hành phần mềm thiết bị", "en": "agent release"},
    "thing.rollout": {"vi": "đợt cập nhật phần mềm", "en": "rollout"},
    "thing.user": {"vi": "tài khoản", "en": "user"},
    "thing.area_code": {"vi": "Mã địa bàn", "en": "Area code"},
    "thing.node_id": {"vi": "Mã thiết bị", "en": "Node id"},
    # pages
    "app.name": {"vi": "Loa Phường", "en": "LoaPhuong"},
    "app.tagline": {"vi": "Hệ thống truyền thanh cơ sở ứng dụng CNTT-VT",
                    "en": "Ward IT/4G public loudspeaker system"},
    "nav.dashboard": {"vi": "Tổng quan", "en": "Dashboard"},
    "nav.skip": {"vi": "Bỏ qua, tới nội dung chính", "en": "Skip to the content"},
    "nav.menu": {"vi": "Trình đơn chính", "en": "Main menu"},
    "nav.language": {"vi": "Ngôn ngữ", "en": "Language"},
    "lang.vi": {"vi": "Tiếng Việt", "en": "Tiếng Việt"},
    "lang.en": {"vi": "English", "en": "English"},
    "role.admin": {"vi": "quản trị", "en": "admin"},
    "role.approver": {"vi": "lãnh đạo duyệt tin", "en": "approver"},
    "role.staff": {"vi": "cán bộ biên tập", "en": "staff"},
    "role.technician": {"vi": "kỹ thuật viên", "en": "technician"},
    "role.operator": {"vi": "điều hành cấp trên", "en": "operator"},
    "role.viewer": {"vi": "người xem", "en": "viewer"},
    "nav.bulletins": {"vi": "Bản tin", "en": "Bulletins"},
    "nav.new_bulletin": {"vi": "Soạn bản tin", "en": "Write a bulletin"},
    "nav.logout": {"vi": "Đăng xuất", "en": "Log out"},
    "login.title": {"vi": "Đăng nhập", "en": "Log in"},
    "login.username": {"vi": "Tên đăng nhập", "en": "Username"},
    "login.password": {"vi": "Mật khẩu", "en": "Password"},
    "login.submit": {"vi": "Đăng nhập", "en": "Log in"},
    "dash.title": {"vi": "Tổng quan hệ thống loa", "en": "Loudspeaker overview"},
    "dash.fleet": {"vi": "Tình trạng thiết bị", "en": "Node status"},
    "dash.offline": {"vi": "{count} mất kết nối", "en": "{count} offline"},
    "dash.alarm": {"vi": "{count} có cảnh báo", "en": "{count} with alarms"},
    "dash.now": {"vi": "Đang phát", "en": "Playing now"},
    "dash.nothing_playing": {"vi": "Không có loa nào đang phát.", "en": "Nothing is playing."},
    "dash.on_nodes": {"vi": "trên {count} thiết bị", "en": "on {count} nodes"},
    "dash.next": {"vi": "Lịch phát còn lại hôm nay", "en": "Still to air today"},
    "dash.no_slots": {"vi": "Không còn lượt phát nào hôm nay.",
                      "en": "Nothing more is scheduled today."},
    "dash.alarms": {"vi": "Cảnh báo trong 24 giờ qua", "en": "Alarms of the last 24 hours"},
    "dash.no_alarms": {"vi": "Không có cảnh báo.", "en": "No alarms."},
    "dash.nodes": {"vi": "Thiết bị", "en": "Nodes"},
    "dash.more_nodes": {"vi": "… và {count} thiết bị khác.", "en": "… and {count} more nodes."},
    "dash.none": {"vi": "Chưa có thiết bị nào.", "en": "No nodes yet."},
    "dash.summary": {"vi": "{online}/{total} thiết bị trực tuyến",
                     "en": "{online}/{total} nodes online"},
    "col.node": {"vi": "Thiết bị", "en": "Node"},
    "col.cluster": {"vi": "Cụm loa", "en": "Cluster"},
    "col.status": {"vi": "Trạng thái", "en": "Status"},
    "col.last_seen": {"vi": "Lần cuối", "en": "Last seen"},
    "col.volume": {"vi": "Âm lượng", "en": "Volume"},
    "col.playing": {"vi": "Đang phát", "en": "Playing"},
    "col.temp": {"vi": "Nhiệt độ", "en": "Temperature"},
    "col.alarms": {"vi": "Cảnh báo", "en": "Alarms"},
    "col.result": {"vi": "Kết quả", "en": "Result"},
    "col.actions": {"vi": "Thao tác", "en": "Actions"},
    "col.reason": {"vi": "Lý do", "en": "Reason"},
    "col.title": {"vi": "Tiêu đề", "en": "Title"},
    "col.created": {"vi": "Tạo lúc", "en": "Created"},
    "state.online": {"vi": "Trực tuyến", "en": "Online"},
    "state.offline": {"vi": "Mất kết nối", "en": "Offline"},
    "state.now": {"vi": "Đang kết nối", "en": "Connected now"},
    "form.title": {"vi": "Tiêu đề", "en": "Title"},
    "form.text": {"vi": "Nội dung bản tin", "en": "Bulletin text"},
    "form.category": {"vi": "Lĩnh vực", "en": "Category"},
    "form.area": {"vi": "Phát tới địa bàn", "en": "Broadcast to area"},
    "form.priority": {"vi": "Mức ưu tiên", "en": "Priority"},
    "form.broadcast_now": {"vi": "Lưu, duyệt và phát ngay",
                           "en": "Save, approve and broadcast now"},
    "form.save_submit": {"vi": "Lưu và gửi duyệt", "en": "Save and send for approval"},
    "form.approve_note": {
        "vi": "Chỉ lãnh đạo (người duyệt) mới được duyệt và phát ngay.",
        "en": "Only an approver may approve and broadcast at once."},
    "bc.title": {"vi": "Lượt phát #{id}", "en": "Broadcast #{id}"},
    "bc.summary": {"vi": "{played}/{total} thiết bị đã phát xong",
                   "en": "{played}/{total} nodes played it"},
    "bc.bulletin": {"vi": "Bản tin", "en": "Bulletin"},
    "bc.programme": {"vi": "Chương trình", "en": "Programme"},
    "bc.listen": {"vi": "Nghe lại", "en": "Listen"},
    "bulletin.approved": {"vi": "Đã duyệt bản tin.", "en": "The bulletin was approved."},
    "bulletin.rejected": {"vi": "Đã từ chối bản tin.", "en": "The bulletin was rejected."},
    "form.voice": {"vi": "Giọng đọc", "en": "Voice"},
    "voice.default": {"vi": "Mặc định của phường", "en": "The ward's default"},
    "voice.vi-north": {"vi": "Miền Bắc", "en": "Northern"},
    "voice.vi-central": {"vi": "Miền Trung", "en": "Central"},
    "voice.vi-south": {"vi": "Miền Nam", "en": "Southern"},
    "form.preview": {"vi": "Xem trước cách đọc và nghe thử",
                     "en": "Preview the reading and listen"},
    "form.spoken_text": {"vi": "Máy sẽ đọc như sau (có thể sửa nếu đọc sai)",
                         "en": "It will be read like this (fix it if a reading is wrong)"},
    "form.engine_used": {"vi": "Giọng đọc tạo bởi: {engine}", "en": "Spoken by: {engine}"},
    "form.source_text": {"vi": "Soạn văn bản", "en": "Write text"},
    "form.source_upload": {"vi": "Tải bản ghi âm", "en": "Upload a recording"},
    "form.file": {"vi": "Tệp âm thanh (mp3, wav, m4a, ogg, flac)",
                  "en": "Audio file (mp3, wav, m4a, ogg, flac)"},
    "review.approve": {"vi": "Duyệt", "en": "Approve"},
    "review.reject": {"vi": "Từ chối", "en": "Reject"},
    "review.comment": {"vi": "Lý do từ chối", "en": "Reason for rejecting"},
    "bulletins.title": {"vi": "Bản tin", "en": "Bulletins"},
    "bulletins.none": {"vi": "Chưa có bản tin.", "en": "No bulletins yet."},
    "bulletin.created": {"vi": "Đã gửi bản tin đi phát.", "en": "The bulletin was sent out."},
    "bulletin.submitted": {"vi": "Đã gửi bản tin chờ duyệt.",
                           "en": "The bulletin was sent for approval."},
    # statuses
    "status.draft": {"vi": "Nháp", "en": "Draft"},
    "status.pending": {"vi": "Chờ duyệt", "en": "Pending"},
    "status.approved": {"vi": "Đã duyệt", "en": "Approved"},
    "status.rejected": {"vi": "Bị từ chối", "en": "Rejected"},
    "status.archived": {"vi": "Lưu trữ", "en": "Archived"},
    "delivery.pending": {"vi": "Chờ gửi", "en": "Waiting to send"},
    "delivery.sent": {"vi": "Đã gửi", "en": "Sent"},
    "delivery.received": {"vi": "Đã nhận", "en": "Received"},
    "delivery.started": {"vi": "Đang phát", "en": "Playing"},
    "delivery.finished": {"vi": "Đã phát xong", "en": "Played"},
    "delivery.failed": {"vi": "Lỗi", "en": "Failed"},
    "delivery.rejected": {"vi": "Bị từ chối", "en": "Rejected"},
    "delivery.preempted": {"vi": "Bị ngắt bởi tin ưu tiên", "en": "Preempted"},
    "delivery.stopped": {"vi": "Đã dừng", "en": "Stopped"},
    "delivery.skipped": {"vi": "Bỏ qua", "en": "Skipped"},
    "delivery.cancelled": {"vi": "Đã huỷ", "en": "Cancelled"},
    # a series' occurrence on one node (server.deliveries.SlotState)
    "slot.scheduled": {"vi": "Đã lên lịch", "en": "Scheduled"},
    "slot.delivered": {"vi": "Thiết bị đã nhận lịch", "en": "Delivered"},
    "slot.ready": {"vi": "Sẵn sàng (đã tải âm thanh)", "en": "Ready (audio cached)"},
    "slot.played": {"vi": "Đã phát", "en": "Played"},
    "slot.preempted": {"vi": "Bị ngắt bởi tin ưu tiên", "en": "Preempted"},
    "slot.stopped": {"vi": "Đã dừng", "en": "Stopped"},
    "slot.failed": {"vi": "Lỗi", "en": "Failed"},
    "slot.skipped": {"vi": "Bỏ qua", "en": "Skipped"},
    "slot.cancelled": {"vi": "Đã huỷ", "en": "Cancelled"},
    "slot.missed": {"vi": "Không phát", "en": "Missed"},
    "bc.occurrences": {"vi": "Các lượt trong lịch lặp (hôm qua đến 2 ngày tới)",
                       "en": "Occurrences of the series (yesterday to two days ahead)"},
    "bc.no_occurrences": {"vi": "Không có lượt nào trong khoảng này.",
                          "en": "No occurrence in this period."},
    "col.start": {"vi": "Giờ phát", "en": "Starts"},
    "col.nodes": {"vi": "Các thiết bị", "en": "Nodes"},
    "bcstatus.held": {"vi": "Lượt phát bị giữ lại, không phát", "en": "Broadcast held, not sent"},
    "bcstatus.skipped": {"vi": "Lượt phát bị bỏ qua", "en": "Broadcast skipped"},
    "bcstatus.cancelled": {"vi": "Lượt phát đã huỷ", "en": "Broadcast cancelled"},
    "bcstatus.awaiting_confirmation": {
        "vi": "Chờ người thứ hai xác nhận; chưa phát cho đến khi được xác nhận",
        "en": "Waiting for a second person to confirm; nothing airs until then"},
    "bcreason.approval_revoked": {"vi": "bản tin đã bị thu hồi phê duyệt (lưu trữ)",
                                  "en": "the bulletin's approval was withdrawn (archived)"},
    "bcreason.approval_missing": {"vi": "không có phê duyệt cho đúng bản âm thanh này",
                                  "en": "no approval exists for exactly this audio"},
    "bcreason.late": {"vi": "đã quá giờ phát hơn 60 giây khi máy chủ gửi được",
                      "en": "more than 60 s past its start when the server could send it"},
    "bcreason.expired": {"vi": "quá hạn trước khi máy chủ gửi được",
                         "en": "expired before the server could send it"},
    "bcreason.dispatch_failed": {"vi": "máy chủ không gửi được; đã ghi nhật ký",
                                 "en": "the server could not send it; it was logged"},
    "bcreason.media_missing": {"vi": "thiếu tệp âm thanh đã duyệt",
                               "en": "the approved audio file is missing"},
    # the airplay report (server/reports.py): its statuses and the reasons for a miss
    "airstatus.aired": {"vi": "Đã phát", "en": "Aired"},
    "airstatus.partial": {"vi": "Phát không trọn", "en": "Partly aired"},
    "airstatus.missed": {"vi": "Không phát", "en": "Missed"},
    "airstatus.pending": {"vi": "Chưa có báo cáo", "en": "Not reported yet"},
    "airreason.offline": {"vi": "thiết bị mất kết nối, chưa nhận được lệnh",
                          "en": "the node was offline and never got the command"},
    "airreason.media_missing": {"vi": "thiết bị không tải được tệp âm thanh",
                                "en": "the audio file could not be had"},
    "airreason.preempted": {"vi": "bị ngắt bởi tin ưu tiên cao hơn",
                            "en": "preempted by a higher priority"},
    "airreason.stopped": {"vi": "đã bị dừng", "en": "stopped"},
    "airreason.cancelled": {"vi": "lượt phát đã huỷ", "en": "the broadcast was cancelled"},
    "airreason.failed": {"vi": "lỗi khi phát", "en": "failed"},
    "airreason.quiet_hours": {"vi": "trong giờ yên tĩnh", "en": "in quiet hours"},
    "airreason.late": {"vi": "quá giờ phát", "en": "too late to start"},
    "airreason.clock_unsynced": {"vi": "đồng hồ thiết bị chưa đồng bộ",
                                 "en": "the node's clock was not synchronised"},
    "airreason.no_report": {"vi": "thiết bị không báo đã phát",
                            "en": "the node never reported playing it"},
    # alerts (server/alerts.py) and their notifications (server/notify.py)
    "alert.kind.node_offline": {"vi": "Thiết bị mất kết nối", "en": "Node offline"},
    "alert.kind.amp_fault": {"vi": "Lỗi bộ khuếch đại", "en": "Amplifier fault"},
    "alert.kind.disk_low": {"vi": "Sắp đầy bộ nhớ", "en": "Disk almost full"},
    "alert.kind.overheat": {"vi": "Thiết bị quá nóng", "en": "Overheating"},
    "alert.kind.clock_off": {"vi": "Đồng hồ thiết bị lệch", "en": "Clock off"},
    "alert.kind.under_voltage": {"vi": "Nguồn điện yếu", "en": "Under-voltage"},
    "alert.kind.modem_unregistered": {"vi": "Modem 4G chưa đăng ký mạng",
                                      "en": "4G modem not registered"},
    "alert.kind.player_failing": {"vi": "Trình phát âm thanh lỗi liên tục",
                                  "en": "Audio player keeps failing"},
    "alert.kind.slot_missed": {"vi": "Lượt phát bị bỏ lỡ", "en": "Missed slot"},
    "alert.kind.media_failing": {"vi": "Không tải được tệp âm thanh",
                                 "en": "Media downloads keep failing"},
    "alert.state.open": {"vi": "Mới", "en": "Open"},
    "alert.state.acknowledged": {"vi": "Đã tiếp nhận", "en": "Acknowledged"},
    "alert.state.resolved": {"vi": "Đã xử lý", "en": "Resolved"},
    "alert.severity.warning": {"vi": "Cảnh báo", "en": "Warning"},
    "alert.severity.critical": {"vi": "Nghiêm trọng", "en": "Critical"},
    "alertd.node_offline": {"vi": "Mất kết nối từ {since}.",
                            "en": "Offline since {since}."},
    "alertd.node_silent": {"vi": "Không nhận được tin gì từ thiết bị kể từ {since}.",
                           "en": "Nothing heard from the node since {since}."},
    "alertd.disk_low": {"vi": "Chỉ còn {mb} MB trống.", "en": "Only {mb} MB free."},
    "alertd.overheat": {"vi": "CPU ở {c} °C.", "en": "CPU at {c} °C."},
    "alertd.clock_off": {"vi": "Đồng hồ lệch {ms} ms so với giờ chuẩn (giới hạn {limit} ms).",
                         "en": "The clock is {ms} ms off NTP time (limit {limit} ms)."},
    "alertd.clock_unsynced": {"vi": "Thiết bị báo đồng hồ chưa được đồng bộ.",
                              "en": "The node says its clock is not synchronised."},
    "alertd.under_voltage": {"vi": "Điện áp nguồn đang quá thấp.",
                             "en": "The supply voltage is too low now."},
    "alertd.modem_unregistered": {"vi": "Modem 4G chưa đăng ký mạng (trạng thái: {state}).",
                                  "en": "The 4G modem is not registered (state: {state})."},
    "alertd.alarm": {"vi": "Thiết bị báo {code}: {node_says}",
                     "en": "The node reports {code}: {node_says}"},
    "alertd.media_failing": {
        "vi": "{count} lượt phát không tải được tệp âm thanh ({reasons}).",
        "en": "{count} plays could not get their audio file ({reasons})."},
    "alertd.slot_missed": {
        "vi": "{count} lượt phát bị bỏ lỡ; gần nhất lúc {at} (lượt phát #{broadcast}): {reason}.",
        "en": "{count} slots missed; the latest at {at} (broadcast #{broadcast}): {reason}."},
    "alertmail.opened": {"vi": "[Loa Phường] {severity}: {kind} - {node}",
                         "en": "[LoaPhuong] {severity}: {kind} - {node}"},
    "alertmail.changed": {"vi": "[Loa Phường] Thay đổi, {severity}: {kind} - {node}",
                          "en": "[LoaPhuong] Changed, {severity}: {kind} - {node}"},
    "alertmail.resolved": {"vi": "[Loa Phường] Đã xử lý: {kind} - {node}",
                           "en": "[LoaPhuong] Resolved: {kind} - {node}"},
    "alertmail.body": {
        "vi": "{kind} ({severity}, {state})\nThiết bị: {node}\nĐịa bàn: {area}\n{text}\n"
              "Bắt đầu: {first_seen}\nLần cuối ghi nhận: {last_seen}\nSố lần: {count}\n"
              "Cảnh báo #{id}: {url}",
        "en": "{kind} ({severity}, {state})\nNode: {node}\nArea: {area}\n{text}\n"
              "Began: {first_seen}\nLast seen: {last_seen}\nCount: {count}\n"
              "Alert #{id}: {url}"},
    "alertmail.resolved_by": {"vi": "Người xử lý: {who}", "en": "Resolved by: {who}"},
    "alertmail.resolved_auto": {"vi": "Tự động: tình trạng đã hết.",
                                "en": "Automatically: the condition cleared."},
    "err.alert_state": {"vi": "Cảnh báo #{id} đang ở trạng thái \"{state}\".",
                        "en": "Alert #{id} is {state}."},
    "priority.normal": {"vi": "Thường", "en": "Normal"},
    "priority.priority": {"vi": "Ưu tiên", "en": "Priority"},
    "priority.live": {"vi": "Trực tiếp", "en": "Live"},
    "priority.emergency": {"vi": "Khẩn cấp", "en": "Emergency"},
    # categories (the seven priority fields of the city plans, plus emergency and other)
    "cat.admin_reform": {"vi": "Cải cách hành chính, chính quyền số",
                         "en": "Administrative reform and e-government"},
    "cat.traffic": {"vi": "Giao thông", "en": "Traffic"},
    "cat.flooding": {"vi": "Chống ngập", "en": "Flooding"},
    "cat.environment": {"vi": "Môi trường", "en": "Environment"},
    "cat.health": {"vi": "Y tế, an toàn thực phẩm", "en": "Health, food safety"},
    "cat.security": {"vi": "An ninh trật tự", "en": "Security and order"},
    "cat.urban": {"vi": "Chỉnh trang đô thị", "en": "Urban improvement"},
    "cat.emergency": {"vi": "Khẩn cấp", "en": "Emergency"},
    "cat.other": {"vi": "Khác", "en": "Other"},
    # programmes and the schedule (server/web/schedule.py)
    "nav.schedule": {"vi": "Lịch phát", "en": "Schedule"},
    "nav.new_schedule": {"vi": "Đặt lịch phát", "en": "Schedule a broadcast"},
    "nav.programmes": {"vi": "Chương trình", "en": "Programmes"},
    "sched.title": {"vi": "Lịch phát tuần: {area}", "en": "Weekly schedule: {area}"},
    "sched.no_areas": {"vi": "Bạn chưa được giao địa bàn nào.",
                       "en": "You have no area to show."},
    "sched.area": {"vi": "Địa bàn", "en": "Area"},
    "sched.show": {"vi": "Xem", "en": "Show"},
    "sched.prev": {"vi": "← Tuần trước", "en": "← Previous week"},
    "sched.next": {"vi": "Tuần sau →", "en": "Next week →"},
    "sched.this_week": {"vi": "Tuần này", "en": "This week"},
    "sched.ics": {"vi": "Tải lịch (.ics)", "en": "Download calendar (.ics)"},
    "sched.week_of": {"vi": "Tuần từ {start} đến {end} (múi giờ {tz})",
                      "en": "Week of {start} to {end} (time zone {tz})"},
    "sched.empty_day": {"vi": "Không có lượt phát.", "en": "Nothing scheduled."},
    "sched.series": {"vi": "định kỳ", "en": "recurring"},
    "sched.cancel_one": {"vi": "Hủy lượt này", "en": "Cancel this one"},
    "sched.cancel_series": {"vi": "Hủy cả lịch định kỳ", "en": "Cancel the whole series"},
    "sched.cancel_broadcast": {"vi": "Hủy lượt phát", "en": "Cancel the broadcast"},
    "sched.occurrence_cancelled": {"vi": "Đã hủy lượt phát này.",
                                   "en": "This occurrence was cancelled."},
    "sched.series_cancelled": {"vi": "Đã hủy lượt phát #{id}.", "en": "Broadcast #{id} cancelled."},
    "sched.new_title": {"vi": "Đặt lịch phát", "en": "Schedule a broadcast"},
    "sched.content": {"vi": "Nội dung phát", "en": "What to broadcast"},
    "sched.bulletins": {"vi": "Bản tin đã duyệt", "en": "Approved bulletins"},
    "sched.programmes": {"vi": "Chương trình", "en": "Programmes"},
    "sched.targets": {"vi": "Phát tới địa bàn", "en": "Broadcast to"},
    "sched.when": {"vi": "Thời gian", "en": "When"},
    "sched.start_date": {"vi": "Ngày bắt đầu", "en": "Start date"},
    "sched.start_time": {"vi": "Giờ phát (một lần)", "en": "Time (once)"},
    "sched.kind": {"vi": "Lặp lại", "en": "Repeat"},
    "sched.kind.once": {"vi": "Một lần", "en": "Once"},
    "sched.kind.daily": {"vi": "Hằng ngày", "en": "Daily"},
    "sched.kind.weekly": {"vi": "Các ngày trong tuần", "en": "On weekdays"},
    "sched.kind.lunar": {"vi": "Theo âm lịch (mùng 1, rằm)", "en": "Lunar (1st, 15th)"},
    "sched.times": {"vi": "Lúc (giờ:phút, cách nhau dấu phẩy)",
                    "en": "At (hh:mm, separated by commas)"},
    "sched.interval": {"vi": "Cứ mấy ngày/tuần một lần", "en": "Every how many days/weeks"},
    "sched.weekdays": {"vi": "Vào các thứ", "en": "On"},
    "sched.lunar_days": {"vi": "Ngày âm lịch", "en": "Lunar days"},
    "sched.until": {"vi": "Đến ngày (không bắt buộc)", "en": "Until (optional)"},
    "sched.skip": {"vi": "Không phát vào ngày lễ", "en": "Skip these holidays"},
    "sched.override": {"vi": "Vẫn phát dù trùng giờ", "en": "Broadcast despite the clash"},
    "sched.check": {"vi": "Kiểm tra trùng lịch", "en": "Check for clashes"},
    "sched.save": {"vi": "Lưu lịch phát", "en": "Save the schedule"},
    "sched.no_clash": {"vi": "Không trùng lịch với lượt phát nào.",
                       "en": "No clash with any other broadcast."},
    "sched.clashes": {"vi": "Các lượt trùng giờ", "en": "Clashing slots"},
    "sched.col_node": {"vi": "Thiết bị", "en": "Node"},
    "sched.col_start": {"vi": "Lượt mới lúc", "en": "New slot at"},
    "sched.col_other": {"vi": "Trùng với", "en": "Clashes with"},
    "sched.col_other_time": {"vi": "Thời gian lượt kia", "en": "Its time"},
    "sched.words": {"vi": "Lịch: {words}", "en": "Schedule: {words}"},
    "sched.conflict": {
        "vi": "Trùng giờ với {count} lượt phát khác trên cùng thiết bị (liệt kê dưới đây). Đổi "
              "giờ, chọn mức ưu tiên cao hơn, hoặc đánh dấu \"Vẫn phát dù trùng giờ\" rồi lưu.",
        "en": "Clashes with {count} other slots on the same nodes (listed below). Change the "
              "time, choose a higher priority, or tick \"Broadcast despite the clash\" and "
              "save."},
    "sched.more_clashes": {"vi": "… và {count} lượt trùng khác.",
                           "en": "… and {count} more clashing slots."},
    "prog.conflict": {
        "vi": "Chương trình dài hơn làm các lịch phát của nó trùng giờ với {count} lượt phát "
              "khác (liệt kê dưới đây). Đánh dấu \"Vẫn lưu dù trùng giờ\" để lưu.",
        "en": "The longer programme makes its series clash with {count} other slots (listed "
              "below). Tick \"Save despite the clash\" to save."},
    "sched.saved": {"vi": "Đã lưu lượt phát #{id}.", "en": "Broadcast #{id} saved."},
    "sched.same_minute": {"vi": "các giờ phát phải cùng số phút",
                          "en": "all times must have the same minutes"},
    "holiday.tet": {"vi": "Tết Nguyên đán", "en": "Lunar New Year (Tết)"},
    "holiday.ram_thang_gieng": {"vi": "Rằm tháng Giêng", "en": "First full moon"},
    "holiday.gio_to_hung_vuong": {"vi": "Giỗ Tổ Hùng Vương", "en": "Hung Kings' day"},
    "holiday.vu_lan": {"vi": "Vu Lan", "en": "Vu Lan"},
    "holiday.trung_thu": {"vi": "Tết Trung thu", "en": "Mid-autumn festival"},
    "holiday.ong_cong_ong_tao": {"vi": "Ông Công Ông Táo", "en": "Kitchen Gods' day"},
    "prog.title": {"vi": "Chương trình phát thanh", "en": "Programmes"},
    "prog.none": {"vi": "Chưa có chương trình nào.", "en": "No programme yet."},
    "prog.new": {"vi": "Tạo chương trình", "en": "New programme"},
    "prog.edit": {"vi": "Chương trình: {title}", "en": "Programme: {title}"},
    "prog.name": {"vi": "Tên chương trình", "en": "Programme title"},
    "prog.items": {"vi": "Các bản tin theo thứ tự", "en": "Bulletins in order"},
    "prog.no_items": {"vi": "Chưa có bản tin nào; thêm bản tin đã duyệt bên dưới.",
                      "en": "No bulletin yet; add approved bulletins below."},
    "prog.add_label": {"vi": "Thêm bản tin đã duyệt", "en": "Add an approved bulletin"},
    "prog.add": {"vi": "Thêm", "en": "Add"},
    "prog.up": {"vi": "Lên", "en": "Up"},
    "prog.down": {"vi": "Xuống", "en": "Down"},
    "prog.remove": {"vi": "Bỏ", "en": "Remove"},
    "prog.total": {"vi": "Tổng thời lượng: {length}", "en": "Total length: {length}"},
    "prog.length": {"vi": "Thời lượng", "en": "Length"},
    "prog.revision": {"vi": "Phiên bản", "en": "Revision"},
    "prog.save": {"vi": "Lưu chương trình", "en": "Save the programme"},
    "prog.saved": {"vi": "Đã lưu chương trình.", "en": "The programme was saved."},
    "prog.override": {"vi": "Vẫn lưu dù trùng giờ", "en": "Save despite the clash"},
}

# A rule in words (schedules/describe.py's sentence parts), under "rule.<part>".
CATALOGUE.update({f"rule.{part}": {lang: _RULE_TEXTS[lang][part] for lang in LANGUAGES}
                  for part in _RULE_TEXTS["vi"]})

CATEGORIES = ("admin_reform", "traffic", "flooding", "environment", "health", "security", "urban",
              "emergency", "other")


def current_language() -> str:
    """?lang=, the session's or user's choice, Accept-Language (API only), then the configured
    one."""
    if has_request_context():
        lang = request.args.get("lang") or session.get("lang") or getattr(g, "user_lang", None)
        if lang in LANGUAGES:
            return lang
        # Scripts may ask by header; pages stay Vietnamese unless the user picks English,
        # whatever language the ward office's browser happens to be set to.
        if request.path.startswith("/api/"):
            best = request.accept_languages.best_match(LANGUAGES)
            if best and request.accept_languages[0][0] != "*":
                return best
    try:
        return current_app.config["SETTINGS"].language
    except (RuntimeError, KeyError):
        return "vi"


def t(key: str, lang: str | None = None, **params) -> str:
    """The text for ``key`` in the current language, with ``params`` filled in."""
    entry = CATALOGUE.get(key)
    if entry is None:
        return key
    text = entry.get(lang or current_language()) or entry["vi"]
    return text.format(**params) if params else text


def local_time(value: dt.datetime | None, fmt: str = "%H:%M:%S %d/%m/%Y") -> str:
    """A naive-UTC datetime shown in the configured time zone (Asia/Ho_Chi_Minh by default)."""
    if value is None:
        return "—"
    tz = ZoneInfo(current_app.config["SETTINGS"].timezone)
    return value.replace(tzinfo=dt.UTC).astimezone(tz).strftime(fmt)
