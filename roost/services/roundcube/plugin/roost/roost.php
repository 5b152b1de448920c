<?php

/**
 * Roost's single sign-on for Roundcube (WEBMAIL=roundcube), part of Roost
 * (roost/services/roundcube/plugin). Roundcube never sees a user's password:
 *
 * - nginx asks Roost's web application before every PHP request (auth_request). Without
 *   a whole SSO session the browser goes to Roost's sign-in page, which is not under the
 *   webmail, so it never loops back here by itself.
 * - On the webmail's SSO entry path (WEB_WEBMAIL/sso) nginx hands this plugin the
 *   address and a token minted for that SSO session (ROOST_SSO_USER, ROOST_SSO_TOKEN);
 *   no other path, and no client header, can set them. The plugin logs in to IMAP with
 *   them; submission and ManageSieve get the same token through %u/%p. The gate takes the
 *   token only on the webmail's own listeners, while the SSO session lives.
 * - Every request also carries the digest of the SSO session's current token
 *   (ROOST_SSO_ID): a Roundcube session made with another token (a stale cookie, a
 *   sign-in since, another account) is ended and signed in again through the entry path.
 * - Roundcube's password form is never shown: a visitor without a Roundcube session is
 *   sent to the entry path, and a password login is aborted. Only a failed SSO login
 *   shows a page, with its error and two links, never an automatic redirect (no loop).
 * - Roundcube's sign-out ends the SSO session too (/sso/logout with this session's key,
 *   ROOST_SSO_LOGOUT); the SSO sign-out revokes the token.
 * - Settings get a link to Roost's own password page instead of a password plugin.
 *
 * Roundcube's plugin API: https://github.com/roundcube/roundcubemail/wiki/Plugin-API
 */
class roost extends rcube_plugin
{
    /** @var string the error of a failed SSO login, shown instead of the login form */
    private $failure = '';

    public function init()
    {
        $this->add_hook('startup', [$this, 'startup']);
        $this->add_hook('authenticate', [$this, 'authenticate']);
        $this->add_hook('login_after', [$this, 'login_after']);
        $this->add_hook('login_failed', [$this, 'login_failed']);
        $this->add_hook('logout_after', [$this, 'logout_after']);
        $this->add_hook('template_object_loginform', [$this, 'login_form']);
        $this->add_hook('settings_actions', [$this, 'settings_actions']);
        $this->register_action('plugin.roost-password', [$this, 'password_page']);
    }

    /** What nginx set for this request (fastcgi_param), or '' */
    private static function given($name)
    {
        return isset($_SERVER[$name]) && is_string($_SERVER[$name]) ? $_SERVER[$name] : '';
    }

    private static function remote()
    {
        return !empty($_REQUEST['_remote']) || !empty($_REQUEST['_framed'])
            || !empty($_SERVER['HTTP_X_ROUNDCUBE_REQUEST']);
    }

    private function to_entry()
    {
        header('Location: ' . rcmail::get_instance()->config->get('roost_sso_entry'));
        exit;
    }

    private static function logout_url()
    {
        $url = rcmail::get_instance()->config->get('roost_sso_logout');
        $key = self::given('ROOST_SSO_LOGOUT');
        return $key === '' ? $url : $url . '?key=' . rawurlencode($key);
    }

    public function startup($args)
    {
        $rcmail = rcmail::get_instance();
        if (self::given('ROOST_SSO_TOKEN') !== '' && self::given('ROOST_SSO_USER') !== '') {
            // The entry path: a new Roundcube session for this SSO session.
            if (!empty($_SESSION['user_id'])) {
                $rcmail->kill_session();
            }
            $args['task'] = 'login';
            $args['action'] = 'login';
            return $args;
        }
        if (!empty($_SESSION['user_id'])) {
            $mine = isset($_SESSION['roost_sso_id']) ? (string) $_SESSION['roost_sso_id'] : '';
            $current = self::given('ROOST_SSO_ID');
            if ($mine !== '' && $current !== '' && hash_equals($mine, $current)) {
                return $args;
            }
            // Made with a token that is not the SSO session's current one: ended.
            $rcmail->kill_session();
        }
        if (self::remote()) {
            // Roundcube tells its page the session is gone; the page then reloads,
            // which comes back here as a full request and goes to the entry path.
            $args['task'] = 'login';
            return $args;
        }
        $this->to_entry();
    }

    public function authenticate($args)
    {
        $user = self::given('ROOST_SSO_USER');
        $token = self::given('ROOST_SSO_TOKEN');
        if ($user === '' || $token === '') {
            // No password login: only the SSO entry path signs in.
            $args['abort'] = true;
            $args['valid'] = false;
            return $args;
        }
        $args['user'] = $user;
        $args['pass'] = $token;
        $args['valid'] = true;
        // nginx's subrequest vouched for the browser; Roundcube's cookie test would fail
        // on a first visit.
        $args['cookiecheck'] = false;
        return $args;
    }

    public function login_after($args)
    {
        $_SESSION['roost_sso_id'] = self::given('ROOST_SSO_ID');
        return $args;
    }

    public function login_failed($args)
    {
        $code = isset($args['code']) ? (string) $args['code'] : '';
        $this->failure = 'The webmail could not sign in to your mailbox' . ($code !== '' ? " (error $code)" : '') . '.';
        return $args;
    }

    public function logout_after($args)
    {
        header('Location: ' . self::logout_url());
        exit;
    }

    public function login_form($args)
    {
        $rcmail = rcmail::get_instance();
        $message = $this->failure !== '' ? $this->failure : 'Sign in through the single sign-on page.';
        $args['content'] = html::div(['id' => 'roost-sso'],
            html::p(null, rcube::Q($message))
            . html::p(null,
                html::a(['href' => $rcmail->config->get('roost_sso_entry')], 'Try again')
                . ' &middot; '
                . html::a(['href' => self::logout_url()], 'Sign out')
            )
        );
        return $args;
    }

    public function settings_actions($args)
    {
        if (rcmail::get_instance()->config->get('roost_password_url')) {
            $args['actions'][] = [
                'action' => 'plugin.roost-password',
                'class'  => 'password',
                'label'  => 'password',
                'title'  => 'password',
            ];
        }
        return $args;
    }

    public function password_page()
    {
        $url = (string) rcmail::get_instance()->config->get('roost_password_url');
        header('Content-Type: text/html; charset=UTF-8');
        echo '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Password</title></head>'
            . '<body style="font-family: sans-serif; padding: 2em">'
            . '<p>Your password is changed on your account page.</p>'
            . '<p>' . html::a(['href' => $url, 'target' => '_top', 'id' => 'roost-password'], 'Change your password') . '</p>'
            . '</body></html>';
        exit;
    }
}
